"""``aidc init --mix``: a site mixing Modbus and SNMP PDUs with OPC-UA, DCGM and Redfish GPU telemetry and a Redfish
CDU, every port from ``--base-port``; the simulator serves it and ``aidc collect --once`` reads every source good."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aidc.config import load_site
from aidc.sitegen import MIX_SECRETS
from app.commands.run import demo_secrets
from simulators.process import SimulatorProcess
from tests.test_collect_modbus import free_block

REPO = Path(__file__).resolve().parents[1]
SECRETS = {"AIDC_SNMP_AUTH_KEY": "auth-key-1234", "AIDC_SNMP_PRIV_KEY": "priv-key-5678",
           "AIDC_REDFISH_PASSWORD": "redfish-pw-9"}  # fmt: skip


def _init(tmp_path: Path, racks: int, base: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path / "mix.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "init", "--mix", "--racks", str(racks), "--base-port", str(base),
         "--data-dir", str(tmp_path / "data"), "-o", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return path, proc


def test_mixed_site_uses_every_source_and_derives_every_port(tmp_path: Path) -> None:
    """The mixed site loads with Modbus and SNMP PDUs, OPC-UA, DCGM and Redfish racks and a Redfish CDU, all its
    ports within a block from the base port, and ``init`` names the secrets' environment variables."""
    base = 41000
    path, proc = _init(tmp_path, 8, base)
    site = load_site(path)
    by_protocol: dict[str, set[str]] = {}
    for d in site.devices:
        by_protocol.setdefault(d.config.protocol, set()).add(d.kind)
    assert set(by_protocol) == {"modbus", "snmp", "opcua", "dcgm", "redfish"}
    assert "pdu" in by_protocol["modbus"]
    assert by_protocol["snmp"] == {"pdu"}
    assert by_protocol["dcgm"] == {"rack"}
    assert by_protocol["redfish"] == {"rack", "cdu"}
    text = path.read_text()
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)]
    ports += [d.config.port for d in site.devices if d.config.port is not None]
    assert ports
    assert all(base - 3 <= p < base + 40 for p in ports), sorted(set(ports))
    for name in MIX_SECRETS:
        assert name in proc.stderr
        assert name in text
    assert not any(v in text for v in SECRETS.values())


@pytest.mark.timeout(240)
def test_collect_once_on_a_mixed_site_reads_every_source_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`aidc simulate` serves a mixed site and `aidc collect --once` lists points from every source, all good."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    base = free_block(40) + 3
    path, _ = _init(tmp_path, 8, base)
    with SimulatorProcess(path):
        proc = subprocess.run(
            [sys.executable, "-m", "app.cli", "collect", "--config", str(path), "--once", "--json"],
            capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=dict(os.environ),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    devices = json.loads(proc.stdout)["devices"]
    site = load_site(path)
    protocol = {d.name: d.config.protocol for d in site.devices}
    assert {d["device"] for d in devices} == set(protocol)
    seen: set[str] = set()
    for d in devices:
        assert d["status"] == "ok", d
        assert d["points"], d["device"]
        assert all(p["quality"] == "good" for p in d["points"]), (
            d["device"],
            [p for p in d["points"] if p["quality"] != "good"][:3],
        )
        seen.add(protocol[d["device"]])
    assert seen == {"modbus", "snmp", "opcua", "dcgm", "redfish"}


def test_demo_generates_only_the_missing_device_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo fills each secret the mixed site names but the environment lacks, and keeps one already set."""
    path, _ = _init(tmp_path, 4, 42000)
    for k in SECRETS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AIDC_REDFISH_PASSWORD", "set-by-operator")
    filled = demo_secrets(load_site(path))
    assert filled == ["AIDC_SNMP_AUTH_KEY", "AIDC_SNMP_PRIV_KEY"]
    assert os.environ["AIDC_REDFISH_PASSWORD"] == "set-by-operator"
    assert all(len(os.environ[k]) >= 8 for k in filled)
