"""alarms wing."""
