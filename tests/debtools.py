"""Helpers for tests that use Debian packages as independent peers (mbpoll, victoria-metrics, ...)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(tool: str, package: str | None = None) -> str:
    """Path of ``tool``; skip the test naming the Debian package if it is missing (fail instead under CI=true)."""
    path = shutil.which(tool)
    if path is not None:
        return path
    message = f"needs Debian package {package or tool}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
