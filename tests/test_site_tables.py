"""Every table of the site file is typed at load: a bad key or value in any table is one line naming the file, the
key path and the value, `aidc check` exits non-zero on it and `aidc run` / `aidc demo` refuse to start."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aidc.config import load_site, site_from_dict
from aidc.errors import ConfigError
from aidc.site_tables import AlarmPolicy, ControlConfig, DashboardConfig, ReportConfig
from aidc.sitegen import SiteTemplate, render_site
from tests.conftest import site_dict

ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 120  # a command that does not refuse would run until killed: fail, do not hang

# One bad value (of the wrong type) per table: (table path, value, text the one line must hold).
BAD_VALUE: list[tuple[tuple[str, ...], str, Any, str]] = [
    (("site",), "latitude", "north", "site.latitude: 'north'"),
    (("simulation",), "speed", "fast", "simulation.speed: 'fast'"),
    (("simulation", "physics"), "leak_ref_frac", "lots", "simulation.physics.leak_ref_frac: 'lots'"),
    (("plant",), "crah_share", "some", "plant.crah_share: 'some'"),
    (("ups",), "rated_kw", "big", "ups.rated_kw: 'big'"),
    (("historian",), "raw_retention_days", "forever", "historian.raw_retention_days: 'forever'"),
    (("carbon",), "flat_g_per_kwh", "green", "carbon.flat_g_per_kwh: 'green'"),
    (("api",), "port", "eighty", "api.port: 'eighty'"),
    (("api",), "enabled", "perhaps", "api.enabled: 'perhaps'"),
    (("control",), "mode", "atuo", "control.mode: 'atuo'"),
    (("control",), "interval_s", "5 min", "control.interval_s: '5 min'"),
    (("control", "trim_respond"), "sp0", "full", "control.trim_respond.sp0: 'full'"),
    (("dashboard",), "port", "web", "dashboard.port: 'web'"),
    (("dashboard", "alarms"), "gpu_temp_high_c", "hot", "dashboard.alarms.gpu_temp_high_c: 'hot'"),
    (("report",), "pue_target", "low", "report.pue_target: 'low'"),
    (("report", "eed"), "installed_it_power_kw", "lots", "report.eed.installed_it_power_kw: 'lots'"),
]


def _put(doc: dict[str, Any], table: tuple[str, ...], key: str, value: Any) -> None:
    node = doc
    for name in table:
        node = node.setdefault(name, {})
    node[key] = value


@pytest.mark.parametrize(
    ("table", "key", "value", "text"), BAD_VALUE, ids=[".".join(b[0]) + "." + b[1] for b in BAD_VALUE]
)
def test_a_bad_value_in_any_table_is_one_line_at_load(table: tuple[str, ...], key: str, value: Any, text: str) -> None:
    """A value of the wrong type in any table fails load_site with one line: file, key path, value."""
    doc = copy.deepcopy(site_dict(2))
    _put(doc, table, key, value)
    with pytest.raises(ConfigError) as info:
        site_from_dict(doc, source="bad.toml")
    line = str(info.value)
    assert line.startswith("bad.toml: ")
    assert text in line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("table", "key", "hint"),
    [
        (("control",), "mdoe", "(did you mean 'mode'?)"),
        (("control", "trim_respond"), "sp_mn", "(did you mean 'sp_min'?)"),
        (("dashboard",), "prot", "(did you mean 'port'?)"),
        (("dashboard", "alarms"), "gpu_temp_hihg_c", "(did you mean 'gpu_temp_high_c'?)"),
        (("report",), "pue_traget", "(did you mean 'pue_target'?)"),
        (("report", "eed"), "ownr", "(did you mean 'owner'?)"),
        (("api",), "prot", "(did you mean 'port'?)"),
    ],
)
def test_an_unknown_key_names_its_value_and_the_nearest_key(table: tuple[str, ...], key: str, hint: str) -> None:
    """A misspelt key in a policy table is refused at load, with its value and the key it was probably meant as."""
    doc = copy.deepcopy(site_dict(2))
    _put(doc, table, key, "x")
    with pytest.raises(ConfigError) as info:
        site_from_dict(doc, source="bad.toml")
    assert str(info.value) == f"bad.toml: {'.'.join((*table, key))}: 'x': unknown key {hint}"


def test_a_misspelt_table_is_an_unknown_table() -> None:
    """A whole table under a wrong name is refused (not ignored), with the table it was probably meant as."""
    doc = copy.deepcopy(site_dict(2))
    doc["contrl"] = {"mode": "auto"}
    with pytest.raises(ConfigError, match=r"^bad\.toml: contrl: unknown table \(did you mean 'control'\?\)$"):
        site_from_dict(doc, source="bad.toml")


def test_an_unknown_array_is_named_without_its_contents() -> None:
    """An unknown key holding an array (of tables) is named on one short line, without the array's text."""
    doc = copy.deepcopy(site_dict(2))
    doc["control"] = {"schedule": [{"tcs_c": 30.0}, {"tcs_c": 31.0}]}
    with pytest.raises(ConfigError, match=r"^bad\.toml: control\.schedule: unknown key$"):
        site_from_dict(doc, source="bad.toml")


def test_the_stages_read_the_models_validated_at_load(tmp_path: Path) -> None:
    """The control, dashboard, alarm and report accessors return the models load_site built, with the file's values."""
    from analytics.alarms.engine import AlarmPolicy as StageAlarmPolicy
    from analytics.report.config import report_config
    from control.policy import ControlConfig as StageControlConfig
    from control.policy import control_config
    from dashboards.app import DashboardConfig as StageDashboardConfig

    doc = site_dict(2)
    doc["control"] = {"mode": "auto", "trim_respond": {"sp0": 0.5}}
    doc["dashboard"] = {"port": 18050, "alarms": {"gpu_temp_high_c": 80.0}}
    doc["report"] = {"pue_target": 1.2, "eed": {"owner": "Acme"}}
    site = site_from_dict(doc, source="ok.toml", path=tmp_path / "ok.toml")
    assert (StageControlConfig, StageDashboardConfig, StageAlarmPolicy) == (ControlConfig, DashboardConfig, AlarmPolicy)
    assert control_config(site) is site.config.control
    assert (site.config.control.mode, site.config.control.trim_respond.sp0) == ("auto", 0.5)
    assert DashboardConfig.from_site(site) is site.config.dashboard
    assert DashboardConfig.from_site(site).port == 18050
    assert AlarmPolicy.from_site(site).gpu_temp_high_c == 80.0
    assert report_config(site) is site.config.report
    assert isinstance(site.config.report, ReportConfig)
    assert site.config.report.eed.owner == "Acme"


def test_dashboard_command_line_overrides_are_validated(tmp_path: Path) -> None:
    """A command-line override of [dashboard] is applied, and a bad one is one line naming the key and the value."""
    site = site_from_dict(site_dict(2), source="ok.toml", path=tmp_path / "ok.toml")
    assert DashboardConfig.from_site(site, port=18051).port == 18051
    with pytest.raises(ConfigError, match=r"ok\.toml \(with command-line options\): dashboard\.port: 70000: "):
        DashboardConfig.from_site(site, port=70000)


def test_a_bad_physics_parameter_is_refused_before_the_simulator_starts(tmp_path: Path) -> None:
    """A misspelt [simulation.physics] parameter stops the simulator process in one line naming the file."""
    from simulators.process import SimulatorProcess

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2)) + "\n[simulation.physics]\nleak_ref_fracc = 0.2\n")
    with pytest.raises(ConfigError, match=r"site\.toml: simulation\.physics\.leak_ref_fracc: unknown parameter"):
        SimulatorProcess(path)


def test_check_runs_the_stages_own_table_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc check` refuses a misspelt [simulation.physics] parameter (checked by the simulators) in one line."""
    from app.cli import main

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2)) + "\n[simulation.physics]\nleak_ref_fracc = 0.2\n")
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"aidc check: {path}: simulation.physics.leak_ref_fracc: unknown parameter (see docs/physics.md for the list)"
    )


# --- the real command line ------------------------------------------------------------------------------------


def _aidc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``aidc`` entry point (this checkout's code) in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=CLI_TIMEOUT_S,
    )


def _site_file(tmp_path: Path, extra: str = "") -> Path:
    """The file `aidc init --racks 2` writes (rendered in-process: the CLI test below runs init itself), plus extra."""
    path = tmp_path / "site.toml"
    text = render_site(SiteTemplate(racks=2, data_dir=str(tmp_path / "var")))
    path.write_text(text + extra, encoding="utf-8")
    return path


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_check_refuses_a_misspelt_control_mode(tmp_path: Path) -> None:
    """`aidc check` on `[control] mdoe = "auto"` exits non-zero with one line naming the file, the key and the value."""
    path = _site_file(tmp_path, '\n[control]\nmdoe = "auto"\n')
    proc = _aidc("check", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_line(proc)
    assert f"{path}: control.mdoe: 'auto': unknown key (did you mean 'mode'?)" in line


def test_check_passes_a_generated_site(tmp_path: Path) -> None:
    """A site written by `aidc init` passes `aidc check` with every table at its defaults."""
    path = tmp_path / "site.toml"
    proc = _aidc("init", "--racks", "2", "--data-dir", str(tmp_path / "var"), "-o", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _aidc("check", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("site dc1: 10 devices")
    assert load_site(path).config.control.mode == "advisory"


@pytest.mark.parametrize("command", ["run", "demo"])
def test_run_and_demo_refuse_to_start_on_a_bad_table(tmp_path: Path, command: str) -> None:
    """`aidc run` and `aidc demo` exit 2 before starting anything, with the one line naming the bad key and value."""
    path = _site_file(tmp_path, '\n[dashboard.alarms]\ngpu_temp_high_c = "hot"\n')
    proc = _aidc(command, "--config", str(path), "--duration", "5", cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_line(proc)
    assert f"{path}: dashboard.alarms.gpu_temp_high_c: 'hot': " in line
    assert proc.stdout == ""  # nothing started: no simulator, no collectors, no dashboard
