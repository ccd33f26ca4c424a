"""The composition root: the aidc command line, the main job and the start-up of its services."""
