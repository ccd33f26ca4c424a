"""energy wing."""
