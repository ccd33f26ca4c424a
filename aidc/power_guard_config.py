"""The site file's ``[power_guard]`` table: how the power guard keeps every PDU feed, the UPS and the site under rating.

The guard itself is ``control.power_guard``; the kernel owns the table's model so that ``aidc check`` refuses a typo
at load, as for the other policy tables (:mod:`aidc.site_tables`). Which racks it may cap is said on the racks
(``cappable = true``, with an optional ``min_power_limit_kw`` and ``pdu_rated_kw``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PowerGuardConfig(BaseModel):
    """``[power_guard]``: headroom, restore hysteresis and step, the site's utility rating, and the mode.

    Every level is kept at or below ``rating * (1 - headroom_frac)``; a capped rack is raised again only while every
    level it feeds is below ``rating * (1 - headroom_frac - restore_hysteresis_frac)``, by at most
    ``restore_step_kw`` a tick and never by more than that margin. A rack's limit is never set above its PDU feed's
    guarded rating, so a surge on one rack is held by the rack itself, within the tick.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "advisory", "auto"] = "auto"  # advisory: decide and audit, write nothing
    interval_s: float = Field(1.0, gt=0, le=300)  # simulated seconds between ticks
    headroom_frac: float = Field(0.05, ge=0, lt=0.5)
    restore_hysteresis_frac: float = Field(0.03, ge=0, lt=0.5)
    restore_step_kw: float = Field(5.0, gt=0)
    min_limit_frac: float = Field(0.5, gt=0, le=1)  # a cappable rack's lowest limit, of its rated power (default)
    stale_s: float = Field(30.0, gt=0)  # a reading older than this (simulated seconds) counts as unknown
    deadband_kw: float = Field(0.5, ge=0)  # limit changes smaller than this are not written
    site_rated_kw: float | None = Field(None, gt=0)  # the utility feed's rating (None: the site level is not guarded)
    user: str = "power-guard"  # the actor its writes are audited under (role operator)
