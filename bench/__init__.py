"""Benchmarks that print figures (not tests); run each as ``python bench/<name>.py``."""
