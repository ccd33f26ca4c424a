"""Secure defaults: no clear-text passwords, no silent certificates, loopback-only control, 0600 keys, no secrets
in logs, and meaningless profiles refused by ``aidc check``."""

from __future__ import annotations

import logging
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from aidc.clock import ScaledClock
from aidc.sitegen import SiteTemplate, render_site
from app.cli import main
from collectors.link import LinkOptions
from collectors.opcua import KNOWN_SERVERS, OpcUaError, OpcUaLink
from simulators.control_api import ControlApi
from simulators.faults import FaultBook
from simulators.opcua_server import OpcUaEndpoint
from tests.fake_physics import FakePhysics
from tests.sim_helpers import site_doc, write_site
from tests.test_collect_modbus import make_site

SECRET = "pw-9f3c1d7e-never-logged"


def _check(tmp_path: Path, doc: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["check", "--config", str(write_site(tmp_path, doc))])
    return rc, capsys.readouterr().err


def test_username_with_policy_none_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A username over policy None (password in clear) is refused by ``aidc check`` with one line naming the key."""
    doc = site_doc(tmp_path, racks=1)
    doc["plant"]["security"] = {"username": "ops", "password_env": "X", "allow_insecure": True}
    rc, err = _check(tmp_path, doc, capsys)
    assert rc == 2
    assert "plant.security" in err
    assert "in clear" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_policy_none_with_writable_points_needs_allow_insecure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policy None on the plant (writable setpoints) is refused unless allow_insecure = true; the generated demo
    sets it and says why in a comment."""
    doc = site_doc(tmp_path, racks=1)
    del doc["plant"]["security"]
    rc, err = _check(tmp_path, doc, capsys)
    assert rc == 2
    assert "plant.security.policy" in err
    assert "allow_insecure" in err
    text = render_site(SiteTemplate(racks=1))
    assert "security = { allow_insecure = true }" in text
    assert "# Demo only" in text
    assert tomllib.loads(text)["plant"]["security"] == {"allow_insecure": True}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("scale", 0.0, "scale 0.0"), ("scale", float("nan"), "scale nan"), ("offset", float("inf"), "offset inf")],
)
def test_meaningless_profile_is_rejected_by_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: float, message: str
) -> None:
    """A site profile with scale = 0 (or a non-finite scale or offset) is rejected by ``aidc check`` in one line."""
    src = Path(__file__).resolve().parents[1] / "collectors" / "profiles" / "ups-generic.toml"
    prof = tomllib.loads(src.read_text(encoding="utf-8"))
    prof["name"] = "ups-broken"
    prof["points"][0][field] = value
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "ups-broken.toml").write_text(tomli_w.dumps(prof), encoding="utf-8")
    doc = site_doc(tmp_path, racks=1)
    doc["site"]["profile_dirs"] = [str(tmp_path / "profiles")]
    doc["ups"]["profile"] = "ups-broken"
    rc, err = _check(tmp_path, doc, capsys)
    assert rc == 2
    assert message in err
    assert "ups-broken" in err
    assert "Traceback" not in err


async def test_control_api_listens_on_loopback_whatever_bind_says() -> None:
    """With simulation.bind = 0.0.0.0 the control API still listens on 127.0.0.1 only."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = ControlApi(None, "0.0.0.0", port)  # type: ignore[arg-type]
    await api.start()
    try:
        assert api._server is not None
        assert {sock.getsockname()[0] for sock in api._server.sockets} == {"127.0.0.1"}
    finally:
        await api.stop()


def _secure_site(tmp_path: Path) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        doc["plant"]["security"] = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "username": "operator",
                                    "password_env": "AIDC_TEST_SEC_PW"}  # fmt: skip

    return make_site(tmp_path, edit=edit)


async def _server(site: Any, pki: Path) -> OpcUaEndpoint:
    plant = site.device("plant-1")
    ep = OpcUaEndpoint(str(plant.config.endpoint), [plant], FakePhysics(site), FaultBook({"plant-1": plant.profile}),
                       pki)  # fmt: skip
    await ep.start()
    return ep


@pytest.mark.timeout(120)
async def test_server_certificate_pinned_on_first_use_and_a_new_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without trusted_server_certs the first certificate is pinned (TOFU); a server presenting another one later is
    refused with a clear error. Private keys are 0600 and the password never appears in any log record."""
    monkeypatch.setenv("AIDC_TEST_SEC_PW", SECRET)
    site = _secure_site(tmp_path)
    plant = site.device("plant-1")
    client_pki = tmp_path / "client-pki"
    link = OpcUaLink("k", [plant], clock=ScaledClock.starting_now(), emit=lambda b: None, options=LinkOptions(),
                     pki_dir=client_pki)  # fmt: skip
    caplog.set_level(logging.DEBUG)
    server = await _server(site, tmp_path / "pki-a")
    try:
        await link.connect()
        batch = await link.poll(plant)
        assert len(batch) > 0
        await link.close()
        assert (client_pki / KNOWN_SERVERS).is_file()
        await link.connect()  # the same certificate again: accepted
        await link.close()
    finally:
        await server.stop()
    server = await _server(site, tmp_path / "pki-b")  # same endpoint, a freshly generated key and certificate
    try:
        with pytest.raises(OpcUaError, match="server certificate changed"):
            await link.connect()
    finally:
        await link.close()
        await server.stop()
    keys = [*client_pki.glob("*key*"), *(tmp_path / "pki-a").glob("*key*")]
    assert keys
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys), [oct(k.stat().st_mode) for k in keys]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "certificate" in logged
    assert SECRET not in logged


def test_historian_token_is_not_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Opening a remote historian that is down logs a warning, but never the token."""
    from aidc.historian_config import HistorianConfig
    from historian import open_historian

    monkeypatch.setenv("AIDC_TEST_TOKEN", SECRET)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = HistorianConfig.model_validate({
        "backend": "victoriametrics", "keep_local": False,
        "remote": {"url": f"http://127.0.0.1:{port}", "token_env": "AIDC_TEST_TOKEN", "timeout_s": 1},
    })  # fmt: skip
    caplog.set_level(logging.DEBUG)
    h = open_historian(cfg, tmp_path)
    h.close()
    assert caplog.records
    assert SECRET not in "\n".join(r.getMessage() for r in caplog.records)
