"""Site configuration: generated sites load, broken ones fail with one line naming the key and value."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aidc.config import load_site, site_from_dict
from aidc.errors import ConfigError
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from tests.conftest import DATA, site_dict


def test_generated_32_rack_site_loads_with_every_device() -> None:
    """`aidc init --racks 32` output validates into 32 PDUs, 32 rack controllers, 8 CDUs, plant, UPS, 3 meters."""
    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=32))))
    kinds = [d.kind for d in site.devices]
    assert kinds.count("pdu") == 32
    assert kinds.count("rack") == 32
    assert kinds.count("cdu") == 8
    assert kinds.count("meter") == 3
    assert {d.config.host for d in site.devices if d.config.protocol == "modbus"} == {"127.0.0.1"}
    gateway = {d.config.port for d in site.devices if d.kind == "meter"}
    assert len(gateway) == 1, "the three meters share one gateway port"


def test_meter_purpose_sets_roles() -> None:
    """The same meter profile gets facility, cooling or other roles from its purpose in the site file."""
    site = site_from_dict(site_dict(2))
    roles = {d.config.name: d.role_of("energy_kwh") for d in site.devices if d.kind == "meter"}
    assert roles == {
        "meter-utility": Role.FACILITY_ENERGY,
        "meter-cooling": Role.COOLING_ENERGY,
        "meter-other": Role.OTHER_ENERGY,
    }


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def _duplicate_pdu(doc: dict[str, Any]) -> None:
    doc["halls"][0]["racks"][1]["pdu"]["name"] = doc["halls"][0]["racks"][0]["pdu"]["name"]


def _same_endpoint(doc: dict[str, Any]) -> None:
    doc["halls"][0]["racks"][1]["pdu"]["port"] = doc["halls"][0]["racks"][0]["pdu"]["port"]


def _unserved_rack(doc: dict[str, Any]) -> None:
    doc["halls"][0]["cdus"][0]["racks"] = doc["halls"][0]["cdus"][0]["racks"][1:]


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("bad port", _set(["halls", 0, "racks", 3, "pdu", "port"], 70000), "halls[0].racks[3].pdu.port: 70000 is not a TCP port"),
    ("unknown profile", _set(["plant", "profile"], "no-such-plant"), "plant.profile: unknown profile 'no-such-plant'"),
    ("duplicate device", _duplicate_pdu, "halls[0].racks[1].pdu.name: duplicate device 'pdu-h1-r01-01'"),
    ("missing key", _delete(["ups", "rated_kw"]), "ups: missing key 'rated_kw'"),
    ("wrong type", _set(["site", "latitude"], "north"), "site.latitude: 'north'"),
    ("bad unit id", _set(["meters", 1, "unit_id"], 300), "meters[1].unit_id: 300 is not a Modbus unit id"),
    ("bad time zone", _set(["site", "timezone"], "Mars/Olympus"), "site.timezone: 'Mars/Olympus' is not an IANA time zone"),
    ("unknown key", _set(["ups", "colour"], "red"), "ups.colour: 'red': unknown key"),
    ("endpoint twice", _same_endpoint, "halls[0].racks[1].pdu: 127.0.0.1:15000 unit 1 is already used by pdu-h1-r01-01"),
    ("rack without cdu", _unserved_rack, "halls[0].cdus: racks ['h1-r01-01'] are served by no CDU"),
    ("protocol mismatch", _set(["ups", "profile"], "plant-opcua"), "ups.protocol: 'modbus' but profile 'plant-opcua' is opcua"),
    ("unknown historian backend", _set(["historian"], {"backend": "mongo"}), "historian.backend: 'mongo'"),
    ("bad endpoint", _set(["plant", "endpoint"], "http://x"), "plant.endpoint: 'http://x' is not an OPC-UA endpoint URL"),
]


@pytest.mark.parametrize(("case", "edit", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_site_names_key_and_value(case: str, edit: Callable[[dict[str, Any]], None], message: str) -> None:
    """Each kind of broken site file raises one ConfigError line naming the file, key path and bad value."""
    doc = copy.deepcopy(site_dict(4))
    edit(doc)
    with pytest.raises(ConfigError) as info:
        site_from_dict(doc, source="broken.toml")
    text = str(info.value)
    assert text.startswith("broken.toml: ")
    assert message in text
    assert "\n" not in text


def test_unreadable_and_invalid_toml_files(tmp_path: Path) -> None:
    """A missing file and a file with a TOML syntax error each give one line naming the file."""
    with pytest.raises(ConfigError, match="cannot read site file"):
        load_site(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\nname = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_site(bad)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'[site]\nname = "caf\xe9"\n', "byte 0xE9 at offset 18 (line 2, column 12): invalid continuation byte"),
        (b"# \xc3\xa9t\xc3\xa9 \x80\n[site]\n", "byte 0x80 at offset 8 (line 1, column 7): invalid start byte"),
        (b'[site]\nname = "x\xed\xa0\x80"\n', "byte 0xED at offset 16 (line 2, column 10): invalid continuation byte"),
        (b'[site]\nname = "\xe2\x82', "byte 0xE2 0x82 at offset 15 (line 2, column 9): unexpected end of data"),
    ],
)
def test_invalid_utf8_is_one_line_with_its_position(tmp_path: Path, raw: bytes, where: str) -> None:
    """A site file with bytes that are not UTF-8 gives one ConfigError line naming the file, the byte, its offset,
    line and column (it was a UnicodeDecodeError traceback)."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert str(err.value) == f"{path}: not UTF-8 text: {where}"


@pytest.mark.parametrize("command", ["check", "run"])
def test_cli_on_invalid_utf8_prints_one_line(tmp_path: Path, command: str) -> None:
    """`aidc check` and `aidc run` on a site file with invalid UTF-8 exit 2 with one line, no traceback."""
    text = render_site(SiteTemplate(racks=1)).encode()
    at = text.index(b"[site]")
    path = tmp_path / "site.toml"
    path.write_bytes(text[:at] + b"# \xff\n" + text[at:])
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", command, "--config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    line = text[:at].count(b"\n") + 1
    assert proc.stderr.strip().splitlines() == [
        f"aidc {command}: {path}: not UTF-8 text: byte 0xFF at offset {at + 2} (line {line}, column 3): "
        "invalid start byte"
    ]


def test_a_profile_file_with_invalid_utf8_is_one_line(tmp_path: Path) -> None:
    """A device profile file with invalid UTF-8 is one ConfigError line naming it and the position."""
    from aidc.profiles import load_profile_file

    path = tmp_path / "meter.toml"
    path.write_bytes(b'name = "m\xe8tre"\n')
    with pytest.raises(ConfigError, match=r"meter\.toml: not UTF-8 text: byte 0xE8 at offset 9 \(line 1, column 10\)"):
        load_profile_file(path)


def test_password_never_in_file() -> None:
    """An OPC-UA username without password_env is refused: secrets come from the environment."""
    doc = site_dict(1)
    doc["plant"]["security"] = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "username": "ops"}
    with pytest.raises(ConfigError, match="needs password_env"):
        site_from_dict(doc, source="s.toml")


def test_cli_check_prints_one_line_and_exits_nonzero(tmp_path: Path) -> None:
    """`aidc check` on a broken file exits 2 with exactly one line on stderr and no traceback."""
    doc = render_site(SiteTemplate(racks=4)).replace("port = 15003", "port = 70000")
    path = tmp_path / "broken.toml"
    path.write_text(doc)
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "check", "--config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "halls[0].racks[3].pdu.port: 70000 is not a TCP port" in lines[0]


def test_init_writes_a_loadable_file_with_climate(tmp_path: Path) -> None:
    """`aidc init --climate EPW -o FILE` writes a site whose location and time zone come from the EPW header."""
    epw = DATA / "weather" / "USA_AZ_Phoenix-Sky.Harbor.epw.gz"
    out = tmp_path / "site.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "init", "--racks", "6", "--climate", str(epw), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    site = load_site(out)
    assert site.config.site.timezone == "Etc/GMT+7"
    assert site.config.site.latitude == pytest.approx(33.428)
    assert len([d for d in site.devices if d.kind == "pdu"]) == 6


def test_init_to_stdout_and_bad_rack_count() -> None:
    """`aidc init` prints TOML to stdout by default and refuses a rack count of zero with one line."""
    ok = subprocess.run([sys.executable, "-m", "app.cli", "init", "--racks", "3"], capture_output=True, text=True)
    assert ok.returncode == 0
    assert tomllib.loads(ok.stdout)["site"]["name"] == "dc1"
    bad = subprocess.run([sys.executable, "-m", "app.cli", "init", "--racks", "0"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "aidc init: --racks 0: choose between 1 and 2000 racks"
