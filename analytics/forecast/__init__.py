"""forecast wing."""
