"""Profiles from published register maps: the [source] table, and the simulator serving the same maps over sockets."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aidc.errors import ConfigError
from aidc.model import Quality
from aidc.profiles import builtin_profiles, load_profile_file
from simulators.facility_points import QUANTITIES
from tests import fake_physics
from tests.debtools import require_tool
from tests.test_collect_modbus import make_site, polls, rig_for, serve_now

PUBLISHED = {
    "raritan-px3-modbus": "rack_pdu",
    "raritan-px3-snmp": "rack_pdu",
    "schneider-pm5000-meter": "meter",
    "apc-smart-ups-modbus": "ups",
}
REFERENCE = ("raritan-px3-pdu", "meter-generic", "meter-wordswap", "ups-generic", "vertiv-xdu-cdu", "plant-opcua",
             "gpu-rack-opcua")  # fmt: skip
KIND = {"rack_pdu": "pdu", "meter": "meter", "ups": "ups", "cdu": "cdu", "plant": "plant", "gpu_rack": "rack"}
PDU, METER, UPS = "pdu-h1-r01-01", "meter-utility", "ups-1"


def test_every_bundled_profile_says_where_its_map_comes_from() -> None:
    """Published profiles name a document and revision; aidc's own keep their names and say they are not published."""
    profiles = builtin_profiles()
    for name, cls in PUBLISHED.items():
        src = profiles[name].source
        assert src is not None, name
        assert (src.device_class, src.published) == (cls, True), name
        assert src.revision, name
        assert not src.document.startswith("none"), name
    for name in REFERENCE:
        src = profiles[name].source
        assert src is not None, name
        assert (src.published, src.document) == (False, "none (aidc reference profile)"), name
    assert all(p.source is not None for p in profiles.values())


def test_published_profiles_only_use_quantities_the_simulator_models() -> None:
    """Every point of a published profile maps to a quantity the facility physics produces for its device class."""
    for name, cls in PUBLISHED.items():
        for p in builtin_profiles()[name].points:
            assert (p.sim or p.name) in QUANTITIES[KIND[cls]], (name, p.name)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('class = "chiller"\ndocument = "d"\nrevision = "r"', "source.class: 'chiller'"),
        ('class = "meter"\ndocument = "none (aidc reference profile)"\nrevision = "n/a"', "published = false"),
        ('class = "meter"\ndocument = "Vendor map"', "source.revision"),
    ],
)
def test_bad_source_table_is_one_line_naming_file_and_key(tmp_path: Path, source: str, message: str) -> None:
    """A wrong [source] (unknown class, 'none' document marked published, missing revision) is one clear line."""
    text = (
        'name = "x"\nprotocol = "modbus"\nmeasurement = "meter"\n\n[source]\n' + source + "\n\n[[points]]\n"
        'name = "v"\ntable = "holding"\naddress = 0\n'
    )
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as err:
        load_profile_file(path)
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def _published(doc: dict[str, Any]) -> None:
    doc["halls"][0]["racks"][0]["pdu"]["profile"] = "raritan-px3-modbus"
    doc["ups"]["profile"] = "apc-smart-ups-modbus"
    for m in doc["meters"]:
        if m["name"] == METER:
            m["profile"] = "schneider-pm5000-meter"


SERVED = {
    PDU: {"inlet1_voltage_v": 229.5, "active_power_w": 87654.5, "inlet1_power_factor": 0.96875},
    METER: {"current_a": 1234.5, "voltage_v": 20000.0, "active_power_w": 4321500.0, "power_factor": 0.9375,
            "energy_kwh": 98765432.123},
    UPS: {"on_battery": True, "load_pct": 57.25, "output_energy_kwh": 1234567.891},
}  # fmt: skip


@pytest.mark.timeout(60)
async def test_simulator_serves_published_maps_and_collectors_read_them_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raritan inlet block at 12296, Schneider kW floats and INT64 Wh at 3203, APC BP8 percent and status bit: the
    simulator encodes each map and the collectors decode every point good and exact over real sockets."""
    monkeypatch.setattr(fake_physics, "COUNTER_RATE_PER_S", 0.0)
    site = make_site(tmp_path, edit=_published)
    async with rig_for(site) as rig:
        for dev, values in SERVED.items():
            rig.physics.values[dev].update(values)
        serve_now(rig)  # a poll already in flight may still carry the old words; the next two cannot
        for dev, values in SERVED.items():
            await polls(rig, dev, 3)
            for point, want in values.items():
                value, quality, reason = rig.value(dev, point)
                assert quality is Quality.GOOD, (dev, point, reason)
                assert value == pytest.approx(float(want), rel=1e-7, abs=1e-9), (dev, point)
        # On the wire, as the documents say: Schneider's "Active Power Total" (register 3060, address 3059) is kW.
        port = rig.facility.listener_of(METER)
        words = port.images[site.device(METER).config.unit_id].words["holding"]  # type: ignore[union-attr]
        kw = struct.unpack(">f", struct.pack(">HH", *words[3059:3061]))[0]
        assert kw == pytest.approx(4321.5)
        wh = struct.unpack(">q", struct.pack(">HHHH", *words[3203:3207]))[0]
        assert wh == 98765432123


def _mbpoll(port: int, unit: int, *args: str) -> str:
    out = subprocess.run(
        ["mbpoll", "-m", "tcp", "-a", str(unit), "-p", str(port), "-1", "-o", "2", *args, "127.0.0.1"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout  # fmt: skip
    values = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("[")]
    assert values, out
    return values[0]


@pytest.mark.timeout(60)
async def test_mbpoll_reads_published_addresses_as_the_vendor_numbers_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mbpoll (libmodbus), with the documents' own numbering, reads the Raritan inlet power at 3012h+1 and the
    Schneider total power at register 3060 (1-based) from the simulator."""
    require_tool("mbpoll")
    import asyncio

    site = make_site(tmp_path, edit=_published)
    async with rig_for(site, protocol="modbus") as rig:
        rig.physics.values[PDU]["active_power_w"] = 87654.5
        rig.physics.values[METER]["active_power_w"] = 4321500.0
        serve_now(rig)
        pdu, meter = site.device(PDU).config, site.device(METER).config
        pdu_w = await asyncio.to_thread(
            _mbpoll, pdu.port or 0, pdu.unit_id, "-t", "4:float", "-B", "-r", str(0x3012 + 1)
        )
        meter_kw = await asyncio.to_thread(_mbpoll, meter.port or 0, meter.unit_id, "-t", "4:float", "-B", "-r", "3060")
    assert float(pdu_w) == pytest.approx(87654.5, rel=1e-5)
    assert float(meter_kw) == pytest.approx(4321.5, rel=1e-5)
