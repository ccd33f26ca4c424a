"""``GET /health``: 200 ``ok`` once the main job is fully up, 503 ``starting`` with a progress figure until then
(and, while the demo simulates its history at first start, the backfill's phase, fraction and simulated time)."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from api.context import ApiContext

PENDING_SHOWN = 20  # names listed while starting (a 1,000-rack site waits on thousands of devices at first)


def readiness(ctx: ApiContext, response: Response) -> dict[str, Any]:
    """The health document; sets 503 on ``response`` while the job's parts are not all live.

    Without a readiness source (``aidc api`` on its own) the API is ready as soon as it answers.
    """
    body: dict[str, Any] = {"status": "ok", "site": ctx.site.name, "controller": ctx.controller is not None,
                            "progress": 1.0, "pending": []}  # fmt: skip
    if ctx.readiness is None:
        return body
    r = ctx.readiness()
    body["progress"] = r.progress
    if r.detail is not None:  # e.g. {"backfill": {phase, fraction, simulated_time, ...}}
        body.update(r.detail)
    if not r.ready:
        response.status_code = 503
        body.update(status="starting", pending=list(r.pending[:PENDING_SHOWN]), pending_count=len(r.pending))
    return body
