"""Interoperability: the OPC-UA collector against a node-opcua server (an implementation nobody here wrote)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aidc.clock import ScaledClock
from aidc.config import DeviceConfig, DeviceRef
from aidc.live import LiveState
from aidc.model import Quality, SeriesKey
from aidc.profiles import Point, Profile
from collectors.engine import Engine, EngineOptions
from collectors.link import LinkOptions
from collectors.opcua import OpcUaLink, SubscriptionOptions
from tests.test_collect_modbus import free_block, until

NODE_DIR = Path(__file__).parent / "node"


def _need_node_opcua() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
        message = "needs Debian package nodejs and `npm install` in tests/node (node-opcua)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return node


@pytest.fixture(scope="module")
def node_server() -> Iterator[str]:
    """A node-opcua server (tests/node/server.js) on a free port; yields ``endpoint|ns=<index>``."""
    node = _need_node_opcua()
    port = free_block(1)
    proc = subprocess.Popen([node, str(NODE_DIR / "server.js"), str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # node-opcua logs warnings before it is ready
            if line.startswith("ready "):
                ns = line.split()[1]
                break
        else:
            pytest.fail("node-opcua server exited before it was ready")
        yield f"opc.tcp://127.0.0.1:{port}/aidc|{ns}"
    finally:
        proc.terminate()
        proc.wait()


def _device(server: str) -> DeviceRef:
    endpoint, ns = server.split("|")
    points = (
        Point(name="rack_power_w", node=f"{ns};s={{device}}.Power", type="FLOAT64", range=(0.0, 200000.0)),
        Point(name="coolant_temp_c", node=f"{ns};s={{device}}.Temp", type="FLOAT64", range=(5.0, 60.0)),
        Point(name="gpus_throttled", node=f"{ns};s={{device}}.Throttled", type="UINT16"),
        Point(name="gpu_temp_c", node=f"{ns};s={{device}}.GpuTemp", type="FLOAT64", array=True),
    )
    prof = Profile(name="node-peer", protocol="opcua", measurement="gpu_rack", points=points)
    cfg = DeviceConfig(name="rack-n1", protocol="opcua", profile="node-peer", endpoint=endpoint, poll_interval_s=0.05)
    return DeviceRef("rack", "node", cfg, prof, {"site": "t", "device": "rack-n1"})


@pytest.mark.parametrize("subscribe", [False, True], ids=["read", "subscribe"])
async def test_reads_and_subscribes_to_node_opcua(node_server: str, subscribe: bool, tmp_path: Path) -> None:
    """Batched reads (split to the server's MaxNodesPerRead of 3) and subscriptions both yield good values."""
    dev = _device(node_server)
    live = LiveState()
    opts = EngineOptions(link=LinkOptions(stuck_polls=10_000), subscription=SubscriptionOptions(enabled=subscribe))
    engine = Engine([dev], sinks=[live.update], clock=ScaledClock.starting_now(), options=opts, data_dir=tmp_path)

    def sample(field: str, **tags: str) -> tuple[float | None, Quality]:
        got = live.get(SeriesKey.of("gpu_rack", field, {**dev.tags, **tags}).id)
        assert got is not None
        return got.value, got.quality

    async with engine:
        await until(lambda: all(sample(f)[1] is Quality.GOOD for f in ("rack_power_w", "coolant_temp_c",
                                                                        "gpus_throttled")))
        await until(lambda: sample("gpu_temp_c", gpu="3") == (53.0, Quality.GOOD))
        first = sample("rack_power_w")[0]
        await until(lambda: sample("rack_power_w")[0] != first)  # values keep arriving
        link = engine.link("rack-n1")
        assert isinstance(link, OpcUaLink)
        if not subscribe:
            assert len(link.rt["rack-n1"].reads) == 2  # 4 nodes, at most 3 per read
