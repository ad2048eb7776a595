"""``iotids demo`` end to end: real generator, training, bundles, broker and agent subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 240.0  # --quick takes ~30 s idle; this machine is shared


def _start_demo(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "demo", "--quick", "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _assert_all_gone(processes: dict[int, psutil.Process]) -> None:
    """Every process the demo started has exited (a zombie would still count as left)."""
    _, alive = psutil.wait_procs(list(processes.values()), timeout=5)
    assert alive == [], f"left running: {[p.info if hasattr(p, 'info') else p for p in alive]}"


@pytest.mark.tf
@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_leaves_nothing_running(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    demo = _start_demo(out)
    seen: dict[int, psutil.Process] = {}
    commands: dict[int, list[str]] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT
    while demo.poll() is None and time.monotonic() < deadline:
        for process in _descendants(demo.pid):
            seen.setdefault(process.pid, process)
            # Read every poll: a child caught between fork and exec still shows the demo's line.
            command = _cmdline(process)
            if command:
                commands[process.pid] = command
        time.sleep(0.05)
    if demo.poll() is None:
        demo.kill()
    output = demo.communicate()[0]
    assert demo.returncode == 0, output

    summary = json.loads((out / "summary.json").read_text())
    assert (out / "summary.md").read_text().startswith("# iotids demo summary")
    traffic = [d for d in summary["detections"] if d["source"] == "traffic"]
    assert len(traffic) == 13  # every attack of the demo-test scenario is listed
    detected = [d for d in traffic if d["detected"]]
    assert detected, output
    assert all(d["seconds_to_detect"] >= 0 for d in detected)
    assert summary["agent"]["packets"] > 0
    assert summary["agent"]["rss_mib_max"] > 0
    assert 0 < summary["agent"]["incidents"] <= summary["agent"]["detections"]
    for name in ("traffic-cnn", "telemetry-gru"):
        assert (out / "bundles" / f"{name}.bundle").stat().st_size > 0
        assert (out / "models" / name / "report.md").is_file()
        assert list((out / "models" / name).glob("*.png"))
        assert summary["models"][name]["latency_us_p50"] > 0
    # progress: one line per stage with elapsed seconds, and the live view's event lines
    assert "] train models:" in output
    assert "] demo finished" in output
    assert any(" new " in line and "score" in line for line in output.splitlines())

    assert any(c[1:4] == ["-m", "agent", "run"] for c in commands.values()), commands
    _assert_all_gone(seen)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


@pytest.mark.tf
@pytest.mark.slow
def test_ctrl_c_while_the_agent_runs_stops_every_process(tmp_path: Path) -> None:
    demo = _start_demo(tmp_path / "demo-out")
    seen: dict[int, psutil.Process] = {}
    agent: psutil.Process | None = None
    deadline = time.monotonic() + DEMO_TIMEOUT
    while agent is None and demo.poll() is None and time.monotonic() < deadline:
        for process in _descendants(demo.pid):
            seen[process.pid] = process
            if _cmdline(process)[1:4] == ["-m", "agent", "run"]:
                agent = process
        time.sleep(0.02)
    if agent is None:
        demo.kill()
        pytest.fail(f"the agent subprocess never appeared:\n{demo.communicate()[0]}")

    demo.send_signal(signal.SIGINT)
    try:
        output = demo.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        demo.kill()
        pytest.fail("the demo did not stop within 60 s of SIGINT")
    assert demo.returncode == 130, output
    assert "interrupted; every process it started has been stopped" in output
    _assert_all_gone(seen)
