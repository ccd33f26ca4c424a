"""The controller endpoints' work: read and change the running supervisor through ``SupervisorControl``.

Every change names the token as the user, so the supervisor's own audit (``control.jsonl``) says who did it; the
API also appends its action to ``api.jsonl``. The same limits as on the dashboard's Control page apply: an override
lasts 1 minute to 24 hours of the site's clock and must lie within the point's profile limits.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from aidc.clock import format_ns
from aidc.errors import AidcError
from api.auth import Identity
from api.context import ApiContext
from api.errors import ApiError
from api.views import clean
from control.interface import Mode, SupervisorControl

MAX_OVERRIDE_MIN = 24 * 60
NO_CONTROLLER = "no controller: the supervisor is not running in this process"
# Which request field a refusal of the supervisor is about (its ConfigError names the device, point or expiry).
_REFUSAL_FIELDS = (("controlled device", "device"), ("controlled setpoint", "point"), ("not a number", "value"),
                   ("expiry", "minutes"))  # fmt: skip


class ModeChange(BaseModel):
    """A new controller mode."""

    mode: Mode


class OverrideChange(BaseModel):
    """Hold ``device``'s ``point`` at ``value`` for ``minutes`` of the site's clock, or release it (``value`` null)."""

    device: str = Field(min_length=1, max_length=200)
    point: str = Field(min_length=1, max_length=200)
    value: float | None
    minutes: float = Field(60.0, ge=1, le=MAX_OVERRIDE_MIN)


def _need(ctx: ApiContext) -> SupervisorControl:
    if ctx.controller is None:
        raise ApiError(503, NO_CONTROLLER)
    return ctx.controller


def _audit(ctx: ApiContext, who: Identity, action: str, detail: dict[str, Any]) -> None:
    ctx.audit_dir.mkdir(parents=True, exist_ok=True)
    rec = {"ts": ctx.clock().isoformat(), "token": who.name, "action": action, **detail}
    with (ctx.audit_dir / "api.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def controller_state(ctx: ApiContext) -> dict[str, Any]:
    """Mode, status (state, last decision, counters) and active overrides, or that no controller runs."""
    c = ctx.controller
    if c is None:
        return {"available": False, "reason": NO_CONTROLLER}
    return clean({"available": True, "mode": c.mode, "status": c.status(), "overrides": c.overrides()})


def change_mode(ctx: ApiContext, who: Identity, body: ModeChange) -> dict[str, Any]:
    """Switch the supervisor's mode as ``who`` (the supervisor audits it under the token's name)."""
    c = _need(ctx)
    before = c.mode
    try:
        c.set_mode(body.mode, who.name)
    except AidcError as exc:
        raise ApiError(422, str(exc), "mode") from None
    _audit(ctx, who, "set_mode", {"from": before, "to": body.mode})
    return {"mode": c.mode}


def change_override(ctx: ApiContext, who: Identity, body: OverrideChange) -> dict[str, Any]:
    """Hold or release one setpoint as ``who``; 422 names the field the supervisor or the profile refuses."""
    c = _need(ctx)
    try:
        dev = ctx.site.device(body.device)
    except KeyError:
        raise ApiError(422, f"device {body.device!r}: no such device in site {ctx.site.name}", "device") from None
    if body.value is None:
        c.clear_override(body.device, body.point, who.name)
        _audit(ctx, who, "clear_override", {"device": body.device, "point": body.point})
        return {"device": body.device, "point": body.point, "value": None}
    spec = next((p for p in dev.profile.points if p.name == body.point), None)
    if spec is not None and not (
        (spec.min is None or body.value >= spec.min) and (spec.max is None or body.value <= spec.max)
    ):
        lo, hi = ("-inf" if spec.min is None else f"{spec.min:g}"), ("inf" if spec.max is None else f"{spec.max:g}")
        raise ApiError(422, f"{body.device}.{body.point} = {body.value:g} is outside {lo}..{hi} {spec.unit}", "value")
    until_ns = int(ctx.clock().value) + int(body.minutes * 60e9)
    try:
        c.set_override(body.device, body.point, body.value, until_ns, who.name)
    except AidcError as exc:
        text = str(exc)
        field = next((f for phrase, f in _REFUSAL_FIELDS if phrase in text), "point")
        raise ApiError(422, text, field) from None
    _audit(ctx, who, "set_override", {"device": body.device, "point": body.point, "value": body.value,
                                       "minutes": body.minutes})  # fmt: skip
    return {"device": body.device, "point": body.point, "value": body.value, "until": format_ns(until_ns)}
