"""The operator dashboard in a real browser (headless Debian Chromium via selenium) against the running stack."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.writer import Actor, SetpointWriter
from control.supervisor import Supervisor
from tests.browser import DashboardStack, browser, console_errors, sign_in, wait_for
from tests.debtools import require_tool

pytestmark = pytest.mark.needs_deb

SHOTS = Path(os.environ.get("AIDC_SCREENSHOTS", "var/screenshots"))
PDU = "pdu-h1-r01-02"
CDU = "cdu-h1-01"


def real_supervisor(stack: DashboardStack) -> Supervisor:
    """The real cooling supervisor on the stack's live state and clock, in auto mode, without a setpoint writer.

    It is not run (no decision loop), so nothing is written to the simulated devices; the tests drive its operator
    interface (mode, overrides, status, audit) from the browser.
    """
    assert stack.job is not None
    sup = Supervisor(stack.site, stack.job.live, None, stack.job.clock)
    sup.set_mode("auto", "test")
    return sup


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardStack]:
    """Simulator, collectors, historian and dashboard (with the real supervisor, not deciding) for the module's tests."""
    require_tool("chromium")  # skip (or fail under CI=true) before starting anything
    require_tool("chromedriver", "chromium-driver")
    tmp = tmp_path_factory.mktemp("dash")
    with DashboardStack(tmp, racks=4, poll_s=0.5, supervisor_factory=real_supervisor) as s:
        reports = s.site.data_dir / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        (reports / "pue-2026-11.csv").write_text("month,pue\n2026-11,1.13\n", encoding="utf-8")
        yield s


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium per test."""
    with browser(tmp_path) as d:
        yield d


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _shot(driver: Any, name: str, tmp_path: Path) -> None:
    for folder in (tmp_path, SHOTS):
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / f"{name}.png"))


def _has_number(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


PAGES = [
    ("overview", "/", "#ov-pue", lambda t: _has_number(t)),
    ("floor", "/floor", "#fl-map .heatmaplayer", lambda t: True),
    ("rack", "/rack/h1-r01-01", "#rk-gpus .barlayer", lambda t: True),
    ("cooling", "/cooling", "#cdu-table tbody", lambda t: CDU in t and _has_number(t)),
    ("control", "/control", "#ct-status", lambda t: "auto" in t or "advisory" in t),
    ("quality", "/quality", "#health-table tbody", lambda t: PDU in t and "up" in t),
    ("reports", "/reports", "#reports-table", lambda t: "pue-2026-11.csv" in t),
    ("energy", "/energy", "#en-cards", _has_number),
    ("power", "/power", "#pw-table", _has_number),
    ("alarms", "/alarms", "#al-summary", lambda t: "active" in t),
]


def test_every_page_renders_with_data_and_no_console_errors(stack: DashboardStack, driver: Any,
                                                            tmp_path: Path) -> None:
    """Each page shows live data (numbers, the floor heatmap, GPU bars, tables) and the console stays clean."""
    sign_in(driver, stack.url, "operator")
    console_errors(driver)  # drop anything logged before sign-in (none expected; the login page has no script)
    for name, path, css, ok in PAGES:
        driver.get(stack.url + path)
        wait_for(lambda css=css, ok=ok: ok(_text(driver, css)), 30, f"data on the {name} page ({css})")
        time.sleep(1.5)  # let one live refresh land so its errors, if any, reach the console
        _shot(driver, name, tmp_path)
        assert not re.search(r'[{\[]\s*"', _text(driver, "body")), f"{name}: raw JSON on the page"
        errors = console_errors(driver)
        assert errors == [], f"{name}: {errors}"


def test_admin_sees_the_users_page_and_an_operator_does_not(stack: DashboardStack, driver: Any,
                                                            tmp_path: Path) -> None:
    """The user administration page lists the accounts for an admin; an operator gets no Users link and no table."""
    from selenium.webdriver.common.by import By

    sign_in(driver, stack.url, "admin")
    console_errors(driver)
    driver.get(stack.url + "/users")
    wait_for(lambda: "operator" in _text(driver, "#us-table") and "viewer" in _text(driver, "#us-table"), 30,
             "the accounts on the users page")
    _shot(driver, "users", tmp_path)
    assert console_errors(driver) == []
    driver.delete_all_cookies()
    sign_in(driver, stack.url, "operator")
    driver.get(stack.url + "/users")
    wait_for(lambda: "needs an admin" in _text(driver, "#us-refused"), 30, "the refusal on the users page")
    assert "Users" not in _text(driver, "#nav")
    assert not driver.find_elements(By.CSS_SELECTOR, "#us-table")


def test_floor_map_click_opens_rack_detail(stack: DashboardStack, driver: Any) -> None:
    """Clicking a rack's cell on the floor map opens that rack's detail page."""
    from selenium.webdriver.common.by import By

    sign_in(driver, stack.url, "viewer")
    driver.get(stack.url + "/floor")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#fl-map .heatmaplayer"), 30, "floor heatmap")
    # Plotly's click event on the heatmap cell of the first rack (row 1, position 1), as a user click raises it.
    driver.execute_script("""
        const g = document.querySelector('#fl-map .js-plotly-plot');
        g.emit('plotly_click', {points: [{customdata: g.data[0].customdata[0][0]}]});""")
    wait_for(lambda: "/rack/h1-r01-01" in driver.current_url, 15, "navigation to the rack page")
    wait_for(lambda: "Rack h1-r01-01" in driver.page_source, 15, "rack page heading")


def test_viewer_cannot_change_the_mode(stack: DashboardStack, driver: Any) -> None:
    """A viewer sees the Control page with the mode locked; forcing the click is refused by the server."""
    from selenium.webdriver.common.by import By

    sup = stack.service.data.supervisor if stack.service else None
    assert isinstance(sup, Supervisor)
    sup.set_mode("auto", "test")
    sign_in(driver, stack.url, "viewer")
    driver.get(stack.url + "/control")
    button = wait_for(lambda: driver.find_element(By.ID, "ct-apply"), 30, "apply button")
    assert not button.is_enabled()
    radios = driver.find_elements(By.CSS_SELECTOR, "#ct-mode input")
    assert radios
    assert all(not r.is_enabled() for r in radios)
    # Forge the callback request the button would send, from the viewer's own session (cookie and CSRF token):
    # the server checks the role itself, so the disabled button is not the only protection.
    reply = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const csrf = document.cookie.split('; ').find(c => c.startsWith('_csrf_token=')).split('=')[1];
        fetch('/_dash-update-component', {method: 'POST', headers: {'Content-Type': 'application/json',
              'X-CSRFToken': csrf}, body: JSON.stringify({output: 'ct-msg.children',
              outputs: {id: 'ct-msg', property: 'children'}, changedPropIds: ['ct-apply.n_clicks'],
              inputs: [{id: 'ct-apply', property: 'n_clicks', value: 1}],
              state: [{id: 'ct-mode', property: 'value', value: 'off'}]})})
          .then(r => r.text()).then(done, e => done(String(e)));""")
    assert "needs an operator sign-in" in reply, reply
    assert sup.mode == "auto"


def test_operator_switches_auto_to_advisory_and_an_audit_entry_appears(stack: DashboardStack, driver: Any,
                                                                       tmp_path: Path) -> None:
    """An operator's mode change reaches the supervisor and shows in the audit log with the operator's name."""
    from selenium.webdriver.common.by import By

    sup = stack.service.data.supervisor if stack.service else None
    assert isinstance(sup, Supervisor)
    sup.set_mode("auto", "test")
    sign_in(driver, stack.url, "operator")
    driver.get(stack.url + "/control")
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, '#ct-mode input[value="advisory"]').is_enabled(), 30,
             "mode choices enabled for the operator")
    driver.find_element(By.CSS_SELECTOR, '#ct-mode input[value="advisory"]').click()
    driver.find_element(By.ID, "ct-apply").click()
    wait_for(lambda: "Mode set to advisory by operator" in _text(driver, "#ct-msg"), 15, "confirmation")
    assert sup.mode == "advisory"
    wait_for(lambda: "auto → advisory" in _text(driver, "#audit-table") and "operator" in _text(driver, "#audit-table"),
             15, "audit entry on the page")
    # The audit table filters on the server: the operator's rows only.
    cell = driver.find_element(By.CSS_SELECTOR, '#audit-table th.dash-filter[data-dash-column="actor"] input')
    cell.send_keys("operator\n")
    wait_for(lambda: {r.text for r in driver.find_elements(By.CSS_SELECTOR, '#audit-table td[data-dash-column="actor"]')}
             == {"operator"}, 15, "audit rows filtered to the operator")
    entries = [json.loads(line) for line in sup.audit_path.read_text(encoding="utf-8").splitlines()]
    assert (entries[-1]["kind"], entries[-1]["user"], entries[-1]["to"]) == ("mode", "operator", "advisory")
    _shot(driver, "control-after-advisory", tmp_path)
    assert console_errors(driver) == []


def test_a_value_changed_in_the_simulator_shows_without_reloading(stack: DashboardStack, driver: Any) -> None:
    """A CDU setpoint written to the simulated device appears in the Cooling page's live table, no reload."""
    from selenium.webdriver.common.by import By

    assert stack.job is not None
    sign_in(driver, stack.url, "operator")
    driver.get(stack.url + "/cooling")
    wait_for(lambda: CDU in _text(driver, "#cdu-table"), 30, "CDU table")
    driver.execute_script("window.__noReload = 42;")
    writer = SetpointWriter(stack.job.engine, stack.site.data_dir / "audit")
    current = stack.job.live.select(measurement="cdu", field="tcs_supply_temp_setpoint_c")["value"].iloc[0]
    target = 33.4 if abs(current - 33.4) > 0.5 else 31.2
    result = stack.run_on_loop(writer.write(Actor("test", "operator"), CDU, "tcs_supply_temp_setpoint_c", target,
                                            "browser test"))
    assert result.ok, result
    t0 = time.monotonic()

    def shown() -> bool:
        cells = driver.find_elements(By.CSS_SELECTOR, "#cdu-table tbody tr td")
        return len(cells) > 2 and cells[2].text == f"{target:.1f}"

    wait_for(shown, 20, f"setpoint {target} on the Cooling page", every_s=0.02)
    latency = time.monotonic() - t0
    assert driver.execute_script("return window.__noReload;") == 42, "the page was reloaded"
    (SHOTS / "latency.txt").parent.mkdir(parents=True, exist_ok=True)
    (SHOTS / "latency.txt").write_text(f"setpoint write to page: {latency:.2f} s\n", encoding="utf-8")
    print(f"setpoint written to the simulator shown on the page after {latency:.2f} s")
    # The change is marked on the setpoint panel it concerns, and only there.
    driver.get(stack.url + "/cooling")
    wait_for(lambda: "tcs_supply_temp_setpoint_c →" in _text(driver, "#co-trend"), 30, "setpoint-change marker")
    driver.get(stack.url + "/")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#ov-power .scatterlayer .trace"), 30, "power trend")
    assert "→" not in _text(driver, "#ov-power")
    assert console_errors(driver) == []


def test_an_injected_fault_raises_an_alarm_that_shows_and_clears(stack: DashboardStack, driver: Any,
                                                                 tmp_path: Path) -> None:
    """Dropping a PDU's connections raises 'device down' on the Overview; acknowledging is audited; it clears."""
    from selenium.webdriver.common.by import By

    sign_in(driver, stack.url, "operator")
    driver.get(stack.url + "/")
    wait_for(lambda: _has_number(_text(driver, "#ov-pue")), 30, "overview")
    stack.sim.inject(PDU, "drop")
    try:
        wait_for(lambda: f"device down: {PDU}" in _text(driver, "#ov-alarms"), 60, "device-down alarm on the page")
        _shot(driver, "overview-alarm", tmp_path)

        def acknowledged() -> bool:
            # The Overview redraws its alarm list when the alarms change: a click on a button a redraw replaced raises
            # a stale-element error, which wait_for retries with a fresh button.
            if "acknowledged by operator" in _text(driver, "#ov-alarms"):
                return True
            driver.find_element(By.CSS_SELECTOR, "#ov-alarms button").click()
            return False

        wait_for(acknowledged, 30, "acknowledgement shown", every_s=1.0)
    finally:
        stack.sim.clear(PDU)
    wait_for(lambda: f"device down: {PDU}" not in _text(driver, "#ov-alarms"), 90, "alarm cleared on the page")
    events = [json.loads(line) for line in (stack.site.data_dir / "alarms" / "alarms.jsonl").read_text().splitlines()]
    kinds = [(e["event"], e["acked_by"]) for e in events if e["id"] == f"device_down:{PDU}"]
    assert ("raise", None) in kinds
    assert ("ack", "operator") in kinds
    assert kinds[-1][0] == "clear"
    driver.get(stack.url + "/control")
    wait_for(lambda: "acknowledge" in _text(driver, "#audit-table"), 15, "acknowledgement in the audit log")
    assert console_errors(driver) == []


def test_operator_override_reaches_the_supervisor_and_is_listed(stack: DashboardStack, driver: Any) -> None:
    """An override sent by the Control page's callback (as the Set button sends it) is passed to the supervisor
    with the operator's name and expiry, listed on the page, and refused outside the point's limits."""
    sup = stack.service.data.supervisor if stack.service else None
    assert isinstance(sup, Supervisor)
    sign_in(driver, stack.url, "operator")
    driver.get(stack.url + "/control")
    wait_for(lambda: "Audit log" in driver.page_source, 30, "control page")

    def send(value: float) -> str:
        return str(driver.execute_async_script("""
            const [value, done] = [arguments[0], arguments[arguments.length - 1]];
            const csrf = document.cookie.split('; ').find(c => c.startsWith('_csrf_token=')).split('=')[1];
            fetch('/_dash-dependencies').then(r => r.json()).then(deps => {
              const dep = deps.find(d => d.inputs.some(i => i.id === 'ct-override'));
              return fetch('/_dash-update-component', {method: 'POST', headers: {'Content-Type': 'application/json',
                'X-CSRFToken': csrf}, body: JSON.stringify({output: dep.output,
                outputs: {id: 'ct-msg', property: dep.output.split('.')[1]}, changedPropIds: ['ct-override.n_clicks'],
                inputs: [{id: 'ct-override', property: 'n_clicks', value: 1}],
                state: [{id: 'ct-point', property: 'value', value: 'cdu-h1-01|tcs_supply_temp_setpoint_c'},
                        {id: 'ct-value', property: 'value', value: value},
                        {id: 'ct-minutes', property: 'value', value: 30}]})});
            }).then(r => r.text()).then(done, e => done(String(e)));""", value))

    assert "is outside 18-45" in send(60.0)
    assert sup.overrides() == []
    reply = send(32.5)
    assert "Override cdu-h1-01 tcs_supply_temp_setpoint_c = 32.5" in reply
    (o,) = sup.overrides()
    assert (o["device"], o["value"], o["user"]) == ("cdu-h1-01", 32.5, "operator")
    assert stack.job is not None
    assert o["until_ns"] > stack.job.clock.now_ns() + 29 * 60 * 10**9
    wait_for(lambda: "expires" in _text(driver, "#ct-overrides") and "32.5" in _text(driver, "#ct-overrides"), 15,
             "override listed with its value and expiry")
    assert console_errors(driver) == []
