"""Errors that reach the operator as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class AidcError(Exception):
    """Base for errors whose message is meant for the operator."""


class ConfigError(AidcError):
    """A site file, profile or option is invalid; the message names the file, key path and bad value."""


class DataError(AidcError):
    """An input data file (weather, trace, CSV) is unreadable or malformed; the message names file and field."""
