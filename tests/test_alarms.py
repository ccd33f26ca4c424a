"""The alarm engine: thresholds from policy and profiles, raise/clear with delay and hysteresis, ack, store, webhook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aidc.config import Site
from aidc.errors import AidcError, ConfigError
from analytics.alarms.engine import AlarmEngine, AlarmPolicy, Webhook, default_rules
from tests.sim_helpers import make_site, site_doc, write_site

S = 1_000_000_000
RACK = "h1-r01-01"


def frame(*rows: tuple[str, str, dict[str, str], float, str]) -> pd.DataFrame:
    """A live-state frame from (measurement, field, tags, value, quality) rows."""
    out = []
    for meas, fld, tags, value, quality in rows:
        out.append({"series": f"{meas} {fld}", "measurement": meas, "field": fld, "value": value,
                    "quality": quality, "reason": "", **tags})
    return pd.DataFrame(out)


def gpu(temp: float, quality: str = "good") -> pd.DataFrame:
    """One rack's GPU temperatures (two GPUs, the hotter at ``temp``)."""
    tags = {"rack": RACK, "device": "rack-h1-r01-01"}
    return frame(("gpu_rack", "gpu_temp_c", {**tags, "gpu": "0"}, temp - 10, quality),
                 ("gpu_rack", "gpu_temp_c", {**tags, "gpu": "1"}, temp, quality))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A one-rack site."""
    return make_site(tmp_path, racks=1)


def engine(site: Site, tmp_path: Path | None = None, **policy: Any) -> AlarmEngine:
    """An engine with the given policy, storing to tmp_path when given."""
    rules = default_rules(site, AlarmPolicy(**policy))
    return AlarmEngine(rules, store=None if tmp_path is None else tmp_path / "alarms.jsonl")


def test_raises_only_after_the_delay(site: Site) -> None:
    """A hot GPU raises 'gpu_hot' once the condition held for raise_delay_s, not before."""
    e = engine(site, gpu_temp_high_c=85, raise_delay_s=30)
    assert e.evaluate(gpu(90), 0) == []
    assert e.evaluate(gpu(90), 29 * S) == []
    raised = e.evaluate(gpu(91), 30 * S)
    assert [a.id for a in raised] == [f"gpu_hot:{RACK}"]
    assert "91.0 °C" in raised[0].message
    assert "limit 85" in raised[0].message


def test_a_blip_shorter_than_the_delay_raises_nothing(site: Site) -> None:
    """A condition that goes away before the delay resets the timer."""
    e = engine(site, raise_delay_s=30)
    e.evaluate(gpu(90), 0)
    e.evaluate(gpu(70), 20 * S)
    assert e.evaluate(gpu(90), 40 * S) == []
    assert e.active() == []


@pytest.mark.parametrize(("values", "cleared"), [
    ([84.5, 84.5, 84.5], False),  # below the limit but inside the hysteresis band: stays raised
    ([83.0, 86.0, 83.0], False),  # recovered, then hot again before the clear delay: stays raised
    ([83.0, 83.0, 83.0], True),  # past the band for the whole clear delay: clears
])
def test_clears_only_past_the_hysteresis_for_the_clear_delay(site: Site, values: list[float], cleared: bool) -> None:
    """Clearing needs the value back below limit - hysteresis continuously for clear_delay_s."""
    e = engine(site, gpu_temp_high_c=85, hysteresis_k=1.0, raise_delay_s=0, clear_delay_s=20)
    e.evaluate(gpu(90), 0)
    assert len(e.active()) == 1
    for i, v in enumerate(values):
        e.evaluate(gpu(v), (10 + 10 * i) * S)
    assert (e.active() == []) is cleared


def test_missing_or_bad_values_never_clear(site: Site) -> None:
    """A GPU whose readings turn bad (device down) keeps its alarm: no data is not good news."""
    e = engine(site, raise_delay_s=0, clear_delay_s=0)
    e.evaluate(gpu(95), 0)
    e.evaluate(gpu(20, quality="bad"), 10 * S)
    e.evaluate(frame(), 20 * S)
    assert "gpu_hot" in [a.rule for a in e.active()]


def test_acknowledge_names_the_user_and_unknown_alarms_are_refused(site: Site) -> None:
    """Acknowledging records who and when; an alarm that is not active is one clear error."""
    e = engine(site, raise_delay_s=0)
    e.evaluate(gpu(95), 0)
    a = e.acknowledge(f"gpu_hot:{RACK}", "alice", 5 * S)
    assert (a.acked_by, a.acked_ns) == ("alice", 5 * S)
    with pytest.raises(AidcError, match="'gpu_hot:nope' is not active"):
        e.acknowledge("gpu_hot:nope", "alice", 6 * S)


def test_events_are_stored_and_replayed_after_a_restart(site: Site, tmp_path: Path) -> None:
    """Raise, ack and clear are JSON lines; a new engine on the same file restores active alarms with their ack."""
    e = engine(site, tmp_path, raise_delay_s=0, clear_delay_s=0)
    e.evaluate(gpu(95), 0)
    e.evaluate(frame(("collector", "up", {"device": "pdu-h1-r01-01"}, 0.0, "good")), 1 * S)
    e.acknowledge(f"gpu_hot:{RACK}", "bob", 2 * S)
    e.evaluate(frame(("collector", "up", {"device": "pdu-h1-r01-01"}, 1.0, "good")), 3 * S)
    lines = [json.loads(x) for x in (tmp_path / "alarms.jsonl").read_text().splitlines()]
    assert [(x["event"], x["rule"]) for x in lines] == [("raise", "gpu_hot"), ("raise", "device_down"),
                                                         ("ack", "gpu_hot"), ("clear", "device_down")]
    with (tmp_path / "alarms.jsonl").open("a") as fh:
        fh.write('{"event": "raise", "id": "torn')  # a crash mid-line
    again = engine(site, tmp_path)
    assert [(a.id, a.acked_by) for a in again.active()] == [(f"gpu_hot:{RACK}", "bob")]
    assert [a.rule for a in again.history()] == ["device_down"]


def test_thresholds_come_from_the_profile_and_the_w_class_when_the_policy_is_silent(tmp_path: Path) -> None:
    """TCS supply high = the CDU profile's setpoint max (45 °C); FWS supply high = the site's W-class limit."""
    doc = site_doc(tmp_path, racks=1)
    doc["site"]["ashrae_class"] = "W32"
    s = load_doc(tmp_path, doc)
    rules = {r.name: r for r in default_rules(s, AlarmPolicy())}
    assert (rules["tcs_supply_high"].threshold, rules["tcs_supply_high"].source) == (45.0, "profile setpoint max")
    assert (rules["fws_supply_high"].threshold, rules["fws_supply_high"].source) == (32.0, "ASHRAE W32")
    rules = {r.name: r for r in default_rules(s, AlarmPolicy(tcs_supply_high_c=40, fws_supply_high_c=30))}
    assert rules["tcs_supply_high"].threshold == 40.0
    assert rules["fws_supply_high"].source == "policy"


def load_doc(tmp_path: Path, doc: dict[str, Any]) -> Site:
    """Load a site document written to tmp_path."""
    from aidc.config import load_site

    return load_site(write_site(tmp_path, doc))


def test_policy_errors_name_the_key_and_the_value(tmp_path: Path) -> None:
    """A bad [dashboard.alarms] value is one ConfigError line with the key path and the bad value."""
    doc = site_doc(tmp_path, racks=1)
    doc["dashboard"] = {"alarms": {"gpu_temp_high_c": -3}}
    with pytest.raises(ConfigError, match=r"dashboard\.alarms\.gpu_temp_high_c: -3: "):
        AlarmPolicy.from_site(load_doc(tmp_path, doc))
    doc["dashboard"] = {"alarms": {"webhook_url_env": "AIDC_TEST_NO_SUCH_HOOK"}}
    with pytest.raises(ConfigError, match="AIDC_TEST_NO_SUCH_HOOK is not set"):
        AlarmEngine.from_site(load_doc(tmp_path, doc))


@pytest.mark.parametrize(("rows", "rule"), [
    ([("gpu_rack", "leak_detected", {"rack": RACK}, 1.0, "good")], "leak"),
    ([("cdu", "fallback_active", {"device": "cdu-h1-01"}, 1.0, "good")], "cdu_fallback"),
    ([("cdu", "tcs_supply_temp_c", {"device": "cdu-h1-01"}, 40.0, "good"),
      ("cdu", "fws_supply_temp_c", {"device": "cdu-h1-01"}, 30.0, "good")], "cdu_approach"),
    ([("pdu", "active_power_w", {"device": "pdu-h1-r01-01"}, float("nan"), "bad")], "stale_points"),
])
def test_each_condition_raises_its_rule(site: Site, rows: list[Any], rule: str) -> None:
    """Leak, CDU fallback, an approach of 10 K and a bad point each raise their own rule."""
    e = engine(site, raise_delay_s=0)
    assert [a.rule for a in e.evaluate(frame(*rows), 0)] == [rule]


@pytest.mark.parametrize(("extra", "rule"), [
    ({"dropped_points_total": 12.0}, "points_dropped"),
    ({"spool_depth_points": 2e6}, "spool_growing"),
    ({"controller_fallback": 1.0}, "controller_fallback"),
])
def test_pipeline_figures_raise_their_rules(site: Site, extra: dict[str, float], rule: str) -> None:
    """Historian drops, a growing spool and a fallen-back controller are alarms too."""
    e = engine(site)
    assert [a.rule for a in e.evaluate(frame(), 0, extra)] == [rule]


def test_webhook_receives_raise_and_clear(site: Site, hook_server: tuple[str, list[dict[str, Any]]]) -> None:
    """With a webhook, every raise and clear is POSTed as JSON."""
    url, received = hook_server
    e = AlarmEngine(default_rules(site, AlarmPolicy(raise_delay_s=0, clear_delay_s=0)), webhook=Webhook(url))
    e.evaluate(gpu(95), 0)
    e.evaluate(gpu(60), S)
    e.close()
    assert [(x["event"], x["id"]) for x in received] == [("raise", f"gpu_hot:{RACK}"), ("clear", f"gpu_hot:{RACK}")]


def test_webhook_url_must_be_http() -> None:
    """A webhook URL with another scheme is refused at start-up."""
    with pytest.raises(ConfigError, match="must start with http"):
        Webhook("file:///etc/passwd")
