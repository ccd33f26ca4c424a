"""``/docs`` and ``/redoc`` that work offline: Swagger UI and ReDoc served by the API itself.

FastAPI's own pages load their JavaScript, CSS and favicon from a CDN, so on a site without internet ``/docs`` is a
blank page. fastapi-offline ships those assets (Swagger UI 5, ReDoc, the favicon) in its wheel and serves them
from the app, with ReDoc's Google fonts turned off: the pages reference no host but the API's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

ASSETS_URL = "/docs/assets"  # Swagger UI and ReDoc bundles, stylesheet and favicon


def offline_fastapi(**kwargs: Any) -> FastAPI:
    """A FastAPI app (``kwargs`` as for FastAPI) whose ``/docs`` and ``/redoc`` load every asset from the app."""
    app: FastAPI = FastAPIOffline(static_url=ASSETS_URL, **kwargs)
    return app
