"""DCGM exporter source against the simulated dcgm-exporter pages over real loopback sockets (FakePhysics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aidc.config import site_from_dict
from aidc.errors import ConfigError
from aidc.model import Quality
from collectors.dcgm import DcgmLink, parse_node, parse_page
from collectors.engine import Engine
from collectors.link import LinkState
from simulators.dcgm_exporter import DcgmExporterSim
from simulators.runner import SimulatedFacility
from tests.fake_physics import FakePhysics
from tests.http_rig import http_rig, http_site
from tests.test_collect_modbus import Rig, polls, serve_now, until

R1, R2 = "rack-h1-r01-01", "rack-h1-r01-02"  # one page per host; one federated page with two hosts


def exporter(rig: Rig) -> DcgmExporterSim:
    """The simulated exporter port."""
    return next(h for h in rig.facility.http if isinstance(h, DcgmExporterSim))


def gpus(rig: Rig, device: str, point: str) -> list[tuple[float | None, Quality, str]]:
    """Every GPU's latest sample of an array point (four GPUs per rack in FakePhysics)."""
    return [rig.value(device, point, gpu=str(i)) for i in range(4)]


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDC_TEST_REDFISH_PASSWORD", "s3cret-bmc")


async def test_every_gpu_and_rack_figure_matches_the_physics(tmp_path: Path) -> None:
    """Per-GPU power, temperatures and utilisation, and the rack's sums and counts, read what the physics serves."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        vals: dict[str, Any] = rig.physics.values[R1]
        vals["gpu_power_w"] = [701.25, 702.5, 703.75, 705.125]
        vals["gpu_temp_c"] = [61.0, 75.0, 66.0, 64.0]
        vals["gpus_throttled"], vals["gpu_clock_pct"] = 1, 92.0  # the hottest GPU throttles, the others are capped
        exporter(rig).xid[R1] = {2: 79}  # GPU 2 fell off the bus
        serve_now(rig)
        await polls(rig, R1, 3)
        await polls(rig, R2, 2)
        assert [v for v, _, _ in gpus(rig, R1, "gpu_power_w")] == vals["gpu_power_w"]
        assert [v for v, _, _ in gpus(rig, R1, "gpu_temp_c")] == vals["gpu_temp_c"]
        assert [v for v, _, _ in gpus(rig, R1, "gpu_memory_temp_c")] == [65.0, 79.0, 70.0, 68.0]
        assert rig.value(R1, "gpu_power_total_w")[0] == pytest.approx(sum(vals["gpu_power_w"]))
        assert rig.value(R1, "gpus_throttled")[:2] == (1.0, Quality.GOOD)
        assert rig.value(R1, "gpus_power_capped")[:2] == (3.0, Quality.GOOD)
        assert rig.value(R1, "gpus_xid")[:2] == (1.0, Quality.GOOD)
        energy, quality, _ = rig.value(R1, "gpu_energy_wh")
        assert quality is Quality.GOOD
        assert energy is not None
        assert energy > 0
        for rack in (R1, R2):  # both page layouts give four good GPUs
            assert all(q is Quality.GOOD for _, q, _ in gpus(rig, rack, "gpu_util_pct"))


async def test_pages_carry_the_exporters_labels(tmp_path: Path) -> None:
    """Every sample has dcgm-exporter's labels, and a federated page names each GPU's host."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        text = exporter(rig).text["/metrics"].decode()
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        assert {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname"} <= set(samples[0].labels)
        assert {s.labels["Hostname"] for s in samples} == {"gpu-b1", "gpu-b2"}
        assert len({s.labels["UUID"] for s in samples}) == 4


async def test_exporter_timeout_garbage_and_restart_read_bad_then_recover(tmp_path: Path) -> None:
    """A late page, an unparseable page and an exporter restart make the rack's points bad; each recovers."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        await polls(rig, R2, 1)
        rig.facility.faults.inject(R2, "delay", 2.0)
        await until(lambda: "no reply within" in rig.value(R2, "gpu_temp_c", gpu="0")[2])
        assert rig.value(R2, "gpus_throttled")[1] is Quality.BAD
        rig.facility.faults.clear(R2)
        await until(lambda: rig.value(R2, "gpu_temp_c", gpu="0")[1] is Quality.GOOD)

        sim = exporter(rig)
        real_refresh = sim.refresh
        sim.refresh = lambda: None  # type: ignore[method-assign]
        sim.text["/metrics"] = b'DCGM_FI_DEV_GPU_TEMP{gpu="0" 41\n\x00garbage {{{\n'
        await until(lambda: "unparseable exporter page" in rig.value(R2, "gpu_temp_c", gpu="1")[2])
        assert rig.value(R2, "gpu_power_total_w")[1] is Quality.BAD
        assert rig.value(R1, "gpu_temp_c", gpu="0")[1] is Quality.GOOD  # the other rack's pages are fine
        sim.refresh = real_refresh  # type: ignore[method-assign]
        await until(lambda: rig.value(R2, "gpu_temp_c", gpu="1")[1] is Quality.GOOD)

        link = rig.engine.link(R1)
        rig.facility.faults.inject(R1, "restart", 0.5)
        await until(lambda: link.state is not LinkState.CONNECTED)
        await until(lambda: rig.value(R1, "gpu_temp_c", gpu="3")[1] is Quality.BAD)
        await until(lambda: link.state is LinkState.CONNECTED)
        await polls(rig, R1, 2)
        assert all(q is Quality.GOOD for _, q, _ in gpus(rig, R1, "gpu_power_w"))


async def test_missing_host_blank_fields_and_nan_are_bad_never_part_sums(tmp_path: Path) -> None:
    """A host gone from a federated page makes its GPUs and the rack figures bad; DCGM blanks and NaN read bad."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        await polls(rig, R2, 2)
        sim = exporter(rig)
        real_refresh = sim.refresh

        def without_b2() -> None:
            real_refresh()
            lines = sim.text["/metrics"].decode().splitlines()
            sim.text["/metrics"] = ("\n".join(x for x in lines if 'Hostname="gpu-b2"' not in x) + "\n").encode()

        sim.refresh = without_b2  # type: ignore[method-assign]
        await until(lambda: "not on its exporter page" in rig.value(R2, "gpu_power_w", gpu="3")[2])
        assert rig.value(R2, "gpu_power_w", gpu="0")[1] is Quality.GOOD  # gpu-b1's GPUs still read
        total = rig.value(R2, "gpu_power_total_w")
        assert total[1] is Quality.BAD
        assert total[2].startswith("incomplete: 2 of 4 GPUs")

        def blank_memory_temp() -> None:
            real_refresh()
            text = sim.text["/metrics"].decode().splitlines()
            out = [x.rsplit(" ", 1)[0] + " 9223372036854775794" if x.startswith("DCGM_FI_DEV_MEMORY_TEMP{") else x
                   for x in text]  # fmt: skip
            sim.text["/metrics"] = ("\n".join(out) + "\n").encode()

        sim.refresh = blank_memory_temp  # type: ignore[method-assign]
        await until(lambda: "DCGM blank" in rig.value(R2, "gpu_memory_temp_c", gpu="1")[2])
        assert rig.value(R2, "gpu_power_w", gpu="3")[1] is Quality.GOOD
        sim.refresh = real_refresh  # type: ignore[method-assign]
        rig.facility.faults.inject(R2, "nan")
        await until(lambda: rig.value(R2, "gpu_temp_c", gpu="2")[2].endswith("not finite: nan"))
        assert rig.value(R2, "gpu_temp_c", gpu="2")[1] is Quality.BAD


async def test_one_scrape_per_interval_for_racks_sharing_a_page(tmp_path: Path) -> None:
    """Two racks on one federated page share one link, and the page is fetched once for both in an interval."""

    def share(doc: dict[str, Any]) -> None:
        r3 = doc["halls"][0]["racks"][2]
        r2 = doc["halls"][0]["racks"][1]
        r3["controller"] = {**r2["controller"], "name": r3["controller"]["name"],
                            "dcgm": {"urls": r2["controller"]["dcgm"]["urls"], "hostnames": ["gpu-c1"]}}  # fmt: skip

    site = http_site(tmp_path, share)
    link = Engine([site.device(R2), site.device("rack-h1-r01-03")]).link(R2)
    assert isinstance(link, DcgmLink)
    assert len(link.devices) == 2
    async with http_rig(site, "dcgm") as rig:
        shared = rig.engine.link(R2)
        assert isinstance(shared, DcgmLink)
        await polls(rig, R2, 4)
        await polls(rig, "rack-h1-r01-03", 4)
        polled = rig.engine.health()[R2].polls + rig.engine.health()["rack-h1-r01-03"].polls
        assert shared.scrapes < polled  # the racks' polls share scrapes
        assert rig.value("rack-h1-r01-03", "gpu_temp_c", gpu="0")[1] is Quality.GOOD


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("dcgm"), "DCGM devices need 'dcgm.urls'"),
        (lambda c: c["dcgm"].update(urls=["http://10.0.0.5/metrics"]), "name the port explicitly"),
        (lambda c: c["dcgm"].update(urls=["ftp://10.0.0.5:21/x"]), "is not a http/https URL"),
        (lambda c: c["dcgm"].update(hostnames=["a", "a"]), "host names must be distinct"),
    ],
)
def test_bad_dcgm_config_is_one_clear_line(tmp_path: Path, edit: Any, message: str) -> None:
    """A DCGM device without pages, with a bad URL or repeated host names is refused with one line naming the key."""

    def bad(doc: dict[str, Any]) -> None:
        edit(doc["halls"][0]["racks"][0]["controller"])

    with pytest.raises(ConfigError) as err:
        http_site(tmp_path, bad)
    text = str(err.value)
    assert message in text
    assert "halls[0].racks[0].controller" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("node", "array", "message"),
    [
        ("avg:DCGM_FI_DEV_GPU_TEMP", False, "unknown aggregate 'avg'"),
        ("count:DCGM_FI_DEV_CLOCKS_EVENT_REASONS", False, "count needs a bit mask"),
        ("DCGM_FI_DEV_GPU_TEMP", False, "scalar points need an aggregate"),
        ("sum:DCGM FI", False, "not a DCGM field name"),
        ("pct:DCGM_FI_DEV_SM_CLOCK", False, "only pct reads F/G"),
        ("sum:DCGM_FI_DEV_SM_CLOCK/DCGM_FI_DEV_MAX_SM_CLOCK", False, "only pct reads F/G"),
    ],
)
def test_bad_dcgm_node_is_one_clear_line(tmp_path: Path, node: str, array: bool, message: str) -> None:
    """A profile point whose node is no DCGM field spec is refused naming the profile, point and node."""
    site = http_site(tmp_path)
    dev = site.device(R1)
    with pytest.raises(ConfigError, match=message) as err:
        parse_node(dev, node, array, "x")
    assert "profile 'gpu-rack-dcgm' point x" in str(err.value)


def test_site_with_a_bad_profile_node_fails_at_engine_start(tmp_path: Path) -> None:
    """An engine over a site whose DCGM profile has a bad node raises ConfigError (one line), never a traceback."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.toml").write_text(
        'name = "bad-dcgm"\nprotocol = "dcgm"\nmeasurement = "gpu_rack"\n'
        '[[points]]\nname = "t"\nnode = "mean:DCGM_FI_DEV_GPU_TEMP"\n', encoding="utf-8")  # fmt: skip
    doc_site = http_site(tmp_path)
    doc: dict[str, Any] = doc_site.config.model_dump(mode="json", exclude_none=True)
    doc["site"]["profile_dirs"] = [str(tmp_path / "profiles")]
    doc["halls"][0]["racks"][0]["controller"]["profile"] = "bad-dcgm"
    site = site_from_dict(doc, source="site.toml", path=tmp_path / "site.toml")
    with pytest.raises(ConfigError, match="unknown aggregate 'mean'") as err:
        Engine(site.devices)
    assert "\n" not in str(err.value)


def test_page_parsing_follows_the_text_format() -> None:
    """Escaped quotes and braces in label values, timestamps, NaN, comments and non-GPU series parse as the format says."""
    page = parse_page(
        "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).\n# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",modelName="NVIDIA \\"B}200\\"",Hostname="n1"} 41 1700000000000\n'
        'DCGM_FI_DEV_GPU_TEMP{gpu="1",Hostname="n1",pod=""} NaN\n'
        "dcgm_exporter_up 1\n"
        'DCGM_FI_DEV_POWER_USAGE{Hostname="n1",gpu="1"} +Inf\n'
    )
    assert page.keys == [("n1", 0), ("n1", 1)]
    assert page.values["DCGM_FI_DEV_GPU_TEMP"][("n1", 0)] == 41.0
    assert page.values["DCGM_FI_DEV_GPU_TEMP"][("n1", 1)] != page.values["DCGM_FI_DEV_GPU_TEMP"][("n1", 1)]
    assert page.values["DCGM_FI_DEV_POWER_USAGE"][("n1", 1)] == float("inf")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('DCGM_FI_DEV_GPU_TEMP{gpu="0"} 41', "truncated"),
        ('DCGM_FI_DEV_GPU_TEMP{gpu="0" 41\n', "unterminated label set"),
        ('DCGM_FI_DEV_GPU_TEMP{gpu="0"} abc\n', "could not convert"),
        ('DCGM_FI_DEV_GPU_TEMP{gpu="0"} 41 12.5.1\n', "invalid literal"),
        ('DCGM_FI_DEV_GPU_TEMP{gpu="0"}41\n', "not a sample line"),
        ('DCGM FI{gpu="0"} 41\n', "not a metric name"),
        ('DCGM_FI_DEV_GPU_TEMP{gpu="0} 41\n', "could not convert|not one label set"),
        ('X{gpu="0"} 1\nX{gpu="0"} 2\n', "duplicate sample X for GPU 0"),
    ],
)
def test_page_the_format_forbids_is_refused(text: str, message: str) -> None:
    """A page with a cut-off line, a bad label set, value, timestamp or name, or a sample twice raises ValueError."""
    with pytest.raises(ValueError, match=message):
        parse_page(text)


async def test_clock_event_reasons_that_are_no_bit_mask_read_bad(tmp_path: Path) -> None:
    """A negative, fractional or huge clock-event reasons value makes the rack's throttle counts bad, not a count."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        await polls(rig, R2, 1)
        sim = exporter(rig)
        real_refresh = sim.refresh

        def negative() -> None:
            real_refresh()
            lines = sim.text["/metrics"].decode().splitlines()
            out = [x.rsplit(" ", 1)[0] + " -32" if x.startswith("DCGM_FI_DEV_CLOCKS_EVENT_REASONS{") and "gpu-b2" in x
                   else x for x in lines]  # fmt: skip
            sim.text["/metrics"] = ("\n".join(out) + "\n").encode()

        sim.refresh = negative  # type: ignore[method-assign]
        await until(lambda: "not a bit mask: -32" in rig.value(R2, "gpus_throttled")[2])
        assert rig.value(R2, "gpus_throttled")[1] is Quality.BAD
        assert rig.value(R2, "gpus_power_capped")[1] is Quality.BAD


async def test_https_pages_are_read_with_the_certificate_pinned(tmp_path: Path) -> None:
    """Exporter pages over HTTPS are read, their certificate pinned on first use; a changed one is refused."""

    def https(doc: dict[str, Any]) -> None:
        ctl = doc["halls"][0]["racks"][1]["controller"]
        ctl["dcgm"]["urls"] = [u.replace("http://", "https://") for u in ctl["dcgm"]["urls"]]
        doc["halls"][0]["racks"][0]["controller"] = {**ctl, "name": R1, "dcgm": {**ctl["dcgm"], "hostnames": []}}

    site = http_site(tmp_path, https)
    pins = site.data_dir / "pki" / "known_servers.json"
    async with http_rig(site, "dcgm") as rig:
        await polls(rig, R2, 2)
        assert rig.value(R2, "gpu_temp_c", gpu="3")[1] is Quality.GOOD
        origin = site.device(R2).config.dcgm.urls[0].rsplit("/", 1)[0]
        assert list(json.loads(pins.read_text())) == [origin]
    pins.write_text(json.dumps({origin: "00" * 32}))
    async with http_rig(site, "dcgm") as rig:
        link = rig.engine.link(R2)
        await until(lambda: "server certificate changed" in link.last_error)
        assert not rig.engine.health()[R2].up


async def test_error_status_counter_reset_and_dropped_exporter(tmp_path: Path) -> None:
    """An HTTP 503 page reads bad and recovers; a GPU counter reset reads uncertain; a dropped exporter goes stale."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        await polls(rig, R1, 2)
        rig.facility.faults.inject(R1, "exception")
        await until(lambda: "HTTP 503" in rig.value(R1, "gpu_temp_c", gpu="0")[2])
        assert rig.value(R1, "gpu_temp_c", gpu="0")[1] is Quality.BAD
        assert rig.engine.link(R1).state is LinkState.CONNECTED  # the exporter answered: no reconnect
        rig.facility.faults.clear(R1)
        await until(lambda: rig.value(R1, "gpu_temp_c", gpu="0")[1] is Quality.GOOD)
        await until(lambda: (rig.value(R1, "gpu_energy_wh")[0] or 0.0) > 0.0)
        rig.facility.faults.inject(R1, "counter_reset")
        await until(lambda: rig.value(R1, "gpu_energy_wh")[2] == "counter reset")
        assert rig.value(R1, "gpu_energy_wh")[1] is Quality.UNCERTAIN
        rig.facility.faults.inject(R2, "drop")
        await until(lambda: rig.value(R2, "gpu_util_pct", gpu="2")[2].startswith("stale"))
        assert rig.value(R2, "gpus_xid")[1] is Quality.BAD


def test_exporter_port_taken_by_another_device_is_one_clear_line(tmp_path: Path) -> None:
    """A DCGM page on the port of a Modbus device is refused by the simulator with one line naming the device."""

    def clash(doc: dict[str, Any]) -> None:
        port = doc["halls"][0]["racks"][0]["pdu"]["port"]
        doc["halls"][0]["racks"][0]["controller"]["dcgm"]["urls"] = [f"http://127.0.0.1:{port}/metrics"]

    site = http_site(tmp_path, clash)
    with pytest.raises(ConfigError, match=r"halls\[0\]\.racks\[0\]\.controller: port \d+ is also used") as err:
        SimulatedFacility(site, FakePhysics(site))
    assert "\n" not in str(err.value)


async def test_rack_clock_is_the_mean_sm_clock_share_of_the_maximum(tmp_path: Path) -> None:
    """gpu_clock_pct (role gpu_clock, as the OPC-UA controllers feed it) is the SM clock as % of the maximum."""
    site = http_site(tmp_path)
    async with http_rig(site, "dcgm") as rig:
        rig.physics.values[R1]["gpu_clock_pct"] = 87.5
        serve_now(rig)
        await polls(rig, R1, 3)
        value, quality, _ = rig.value(R1, "gpu_clock_pct")
        assert quality is Quality.GOOD
        assert value == pytest.approx(round(1980 * 0.875) / 1980 * 100)  # DCGM reports whole MHz
