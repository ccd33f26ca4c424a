"""leasing wing."""
