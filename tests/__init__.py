"""aidc test suites."""
