"""Sub-commands of the aidc CLI that belong to the core."""
