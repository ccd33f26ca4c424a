"""aidc: energy and telemetry manager for liquid-cooled AI data centres."""

__version__ = "0.1.0"
