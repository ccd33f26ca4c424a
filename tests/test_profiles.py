"""Device profiles: bundled files are valid and broken ones are refused with the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidc.errors import ConfigError
from aidc.profiles import DataType, builtin_profiles, load_profile_file


def test_bundled_profiles_cover_every_device_kind() -> None:
    """PDU, CDU, UPS, two meters, plant and GPU rack profiles are bundled and valid."""
    names = set(builtin_profiles())
    assert {
        "raritan-px3-pdu",
        "vertiv-xdu-cdu",
        "ups-generic",
        "meter-generic",
        "meter-wordswap",
        "plant-opcua",
        "gpu-rack-opcua",
    } <= names


def test_writable_points_carry_limits_and_safe_defaults() -> None:
    """Every writable point of every bundled profile has min <= safe_default <= max."""
    for prof in builtin_profiles().values():
        for p in prof.points:
            if p.writable:
                assert p.min is not None
                assert p.max is not None
                assert p.safe_default is not None
                assert p.min <= p.safe_default <= p.max, (prof.name, p.name)


def test_profile_quirks_look_like_real_devices() -> None:
    """The CDU caps reads at 8 registers, the PDU counts Wh in UINT64, one meter swaps words."""
    profs = builtin_profiles()
    assert profs["vertiv-xdu-cdu"].workarounds.max_registers_per_read == 8
    energy = profs["raritan-px3-pdu"].point("active_energy_wh")
    assert energy.type is DataType.UINT64
    assert energy.counter
    assert profs["meter-wordswap"].point("active_power_w").byte_order == "CDAB"
    assert profs["ups-generic"].point("output_energy_kwh").modulus == pytest.approx(2**32 * 0.01)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name="x"\nprotocol="modbus"\nmeasurement="m"\npoints=[{name="a", table="input"}]', "need table and address"),
        (
            'name="x"\nprotocol="modbus"\nmeasurement="m"\n'
            'points=[{name="a", table="input", address=0, type="FLOAT32"},'
            '{name="b", table="input", address=1, type="INT16"}]',
            "overlap at input register 1",
        ),
        (
            'name="x"\nprotocol="modbus"\nmeasurement="m"\n'
            'points=[{name="a", table="holding", address=0, writable=true, min=0, max=10, safe_default=11}]',
            "safe_default 11.0 is outside",
        ),
        ('name="x"\nprotocol="opcua"\nmeasurement="m"\npoints=[{name="a"}]', "need a node id"),
        ('name="x"\nprotocol="modbus"\nmeasurement="m"\npoints=[{name="a", table="input", address=70000}]', "70000"),
    ],
)
def test_broken_profile_names_file_and_problem(tmp_path: Path, body: str, message: str) -> None:
    """A broken profile file raises one ConfigError naming the file and the problem."""
    path = tmp_path / "broken.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)
