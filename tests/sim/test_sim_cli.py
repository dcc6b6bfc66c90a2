"""``tillvault simulate`` and ``tillvault demo`` as a user runs them, and the same seed giving the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tillvault.sim.simulate import Outage, Scenario, run_scenario

TV = [sys.executable, "-c", "from tillvault.cli.main import main; main()"]


def tv(*args: str, ok: tuple[int, ...] = (0,), timeout: float = 180) -> tuple[int, Any, str, str]:
    proc = subprocess.run([*TV, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    out = json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else None
    assert proc.returncode in ok, (args, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.returncode, out, proc.stdout, proc.stderr


def test_sim_cli_simulate_json_and_report(tmp_path: Path) -> None:
    report = tmp_path / "sim.html"
    _, out, _, _ = tv(
        "simulate",
        "--days", "3",
        "--per-day", "120",
        "--surge", "5",
        "--capacity", "3MiB",
        "--outage", "1@12:00+5h",
        "--device-b-fails-on", "2",
        "--seed", "42",
        "--report", str(report),
        "--json",
    )  # fmt: skip
    for key in ("sales_attempted", "approved", "declined", "refused_for_space", "lost", "settlements"):
        assert isinstance(out[key], int) and isinstance(out["baseline"][key], int), key
    assert out["lost"] == 0 and out["settlement_failures"] == 0
    assert out["scenario"]["seed"] == 42 and out["scenario"]["outages"] == ["day 1 12:00 for 5 h"]
    b = out["device_b"]
    assert b["fails_on"] == 2
    if b["applicable"]:  # the two-device feature is there: B was pulled out at noon on day 2
        assert b["failed_at"] == "2025-06-04T12:00:00+08:00"
        assert {"name": "B", "state": "gone", "role": "none"} in b["devices"] or any(
            d["name"] == "B" and d["state"] != "ok" for d in b["devices"]
        )
        assert any(a["device"] == "B" for a in b["alerts"])
    assert out["report"] == str(report.resolve()) and report.read_text().count("<svg") == 3


def test_sim_cli_rejects_bad_options() -> None:
    _, out, _, _ = tv("simulate", "--outage", "tomorrow", "--json", ok=(2,))
    assert out["ok"] is False and "DAY[@HH[:MM]][+DURATION]" in out["reason"]
    _, _, _, err = tv("simulate", "--capacity", "lots", ok=(2,))
    assert "not a size" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device-b-fails-on", "10"], "--device-b-fails-on must be 0 to 1"),
        (["--surge", "0"], "--surge must be 1 (no surge) to 100, got 0"),
        (["--surge", "inf"], "--surge must be 1 (no surge) to 100, got inf"),
        (["--surge-day", "5"], "--surge-day must be 0 to 1"),
        (["--outage", "5"], "--outage starts on day 5"),
        (["--outage", "99999999999999999999"], "is beyond any run"),
        (["--outage", "0@10:75"], "the minute must be below 60"),
        (["--settlement-outage", "3@20:00"], "--settlement-outage starts on day 3"),
        (["--per-day", "100000000"], "--per-day must be 0 to 100,000"),
        (["--capacity", "1KB"], "--capacity 1KB is below the"),
        (["--report", "/proc/no/such/report.html"], "--report /proc/no/such/report.html cannot be written"),
    ],
)
def test_an_impossible_scenario_is_refused_before_it_runs_naming_the_option(args: list[str], message: str) -> None:
    _, out, _, err = tv("simulate", "--days", "2", "--per-day", "5", *args, "--json", ok=(2,), timeout=60)
    assert out["ok"] is False and message in out["reason"], out
    assert "Traceback" not in err


def test_a_report_path_that_is_a_folder_or_under_a_file_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    _, _, _, err = tv("simulate", "--days", "1", "--per-day", "5", "--report", str(tmp_path), ok=(2,), timeout=60)
    assert f"--report {tmp_path} is a folder" in err
    _, _, _, err = tv("demo", "--report", str(tmp_path / "afile" / "r.html"), ok=(2,), timeout=60)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err


def test_sim_cli_demo_short(tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    _, _, stdout, _ = tv("demo", "--days", "3", "--per-day", "100", "--report", str(report))
    assert "TillVault" in stdout and "naive JSON store" in stdout
    for row in ("sales lost", "settlements failed", "refused before authorization", "bytes per transaction",
                "peak usage"):  # fmt: skip
        assert row in stdout
    assert f"Report: {report}" in stdout.replace("\n", "")
    assert report.exists()


def _without_timing(figures: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in figures.items() if k != "timing"}
    out["scenario"] = {k: v for k, v in out["scenario"].items() if k not in ("host_mode", "pin_core")}
    return out


def test_sim_same_seed_same_numbers() -> None:
    """Thread host on one core in one run, host process on any core in the other: identical figures and timeline."""
    sc = Scenario(
        days=3,
        per_day=150,
        surge=6,
        surge_days=(1,),
        capacity="2MiB",
        outages=(Outage.parse("2@10:00+6h"),),
        ageing=0.1,
        archive_error_rate=0.5,
        seed=99,
    )
    a = run_scenario(sc)
    b = run_scenario(Scenario(**{**sc.__dict__, "host_mode": "process", "pin_core": False}))
    assert _without_timing(a.figures) == _without_timing(b.figures)
    assert a.timeline == b.timeline
    c = run_scenario(Scenario(**{**sc.__dict__, "seed": 100}))
    assert c.figures["sales_attempted"] != a.figures["sales_attempted"]


def test_the_folder_of_a_killed_simulation_with_its_keys_is_removed_by_the_next_runs_clean_up() -> None:
    import signal
    import time

    from tillvault.sim.simulate import ram_dir, remove_abandoned_workdirs

    parent = ram_dir() or Path(__import__("tempfile").gettempdir())
    before = set(parent.glob("tillvault-sim-*"))
    proc = subprocess.Popen(
        [*TV, "simulate", "--days", "3", "--per-day", "400", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        mine: set[Path] = set()
        while time.monotonic() < deadline and not any((d / "keyring").exists() for d in mine):
            time.sleep(0.2)
            mine = {d for d in set(parent.glob("tillvault-sim-*")) - before if (d / "owner.pid").exists()}
        assert mine, "the simulation made no folder"
        time.sleep(1.0)  # well into the run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert all(d.exists() for d in mine)  # SIGKILL: no chance to clean up
    (kept_dir := parent / f"tillvault-sim-kept-{os.getpid()}").mkdir()  # no owner file: not judged
    try:
        alive = parent / f"tillvault-sim-alive-{os.getpid()}"
        alive.mkdir()
        (alive / "owner.pid").write_text(f"{os.getpid()}\n")  # a run still going
        removed = remove_abandoned_workdirs(parent)
        assert mine <= set(removed) and not any(d.exists() for d in mine)
        assert alive.exists() and kept_dir.exists()
    finally:
        import shutil

        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(kept_dir, ignore_errors=True)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_an_error_rate_that_is_not_a_chance_is_refused_naming_its_option(rate: float) -> None:
    from tillvault.errors import InvalidInput
    from tillvault.sim.simulate import Scenario

    for field, option in (("media_error_rate", "--media-errors"), ("archive_error_rate", "--archive-errors")):
        with pytest.raises(InvalidInput, match=f"{option} must be a chance from 0 to 1"):
            Scenario(days=2, per_day=5, **{field: rate})
