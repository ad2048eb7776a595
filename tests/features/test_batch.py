"""A folder of captures in parallel: the same steps and windows as one file at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.features.batch import Job, featurize_job, jobs_for, run_local, run_ray
from agent.features.capture import read_capture
from agent.features.steps import StepSpec
from agent.features.traffic import featurize
from tests.features import craft

S = 1_000_000_000
T0 = 1_700_000_000 * S
STEPS = st.sampled_from(["1s", "0.25s", "7p", "20p/1s"])
REPO = Path(__file__).resolve().parents[2]


def _frames(seed: int, n: int) -> list[tuple[int, bytes]]:
    """``n`` TCP/UDP/ICMP frames with bursts and idle gaps, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.choice([1_000, 3_000_000, 400_000_000, 2_500_000_000], n))
    frames = []
    for i in range(n):
        src, dst = f"10.0.0.{rng.integers(1, 30)}", f"10.0.1.{rng.integers(1, 4)}"
        kind = int(rng.integers(0, 3))
        if kind == 0:
            l4, proto = craft.tcp(int(rng.integers(1024, 65535)), 1883, int(rng.integers(0, 64))), 6
        elif kind == 1:
            l4, proto = (
                craft.udp(int(rng.integers(1024, 65535)), 53, b"x" * int(rng.integers(0, 80))),
                17,
            )
        else:
            l4, proto = craft.icmp(8), 1
        frames.append(
            (int(ts[i]), craft.ethernet(craft.ETH_IPV4, craft.ipv4(proto, l4, src=src, dst=dst)))
        )
    return frames


def _folder(tmp: Path, seeds: list[int], sizes: list[int]) -> Path:
    folder = tmp / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, n in zip(seeds, sizes, strict=True):
        (folder / f"c{seed}.pcap").write_bytes(craft.pcap(_frames(seed, n)))
    return folder


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 400), step=STEPS)
def test_a_job_gives_the_steps_of_the_whole_file_path(
    tmp_path: Path, seed: int, n: int, step: str
) -> None:
    path = tmp_path / f"p{seed}-{n}.pcap"
    path.write_bytes(craft.pcap(_frames(seed, n)))
    out = tmp_path / f"p{seed}-{n}.npz"
    summary = featurize_job(Job(str(path), step, 4, str(out)))
    want = featurize(read_capture(path).packets, StepSpec.parse(step))
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["steps"], want.values)
        np.testing.assert_array_equal(saved["start_ns"], want.start_ns)
        np.testing.assert_array_equal(saved["packets"], want.packets)
    assert summary["steps"] == len(want)


@pytest.mark.slow
def test_two_worker_processes_give_what_one_gives(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [1, 2, 3, 4], [300, 0, 50, 700])
    jobs = jobs_for(folder, "20p/1s", 4, None)
    one, two = run_local(jobs, 1), run_local(jobs, 2)
    assert [r["digest"] for r in two] == [r["digest"] for r in one]
    assert [r["capture"] for r in two] == sorted(str(p) for p in folder.iterdir())
    assert all(r["worker_peak_rss_kb"] > 0 for r in two)


@pytest.mark.slow
def test_ray_tasks_give_what_one_process_gives(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the [cluster] extra (Ray) is not installed")
    folder = _folder(tmp_path, [5, 6, 7], [200, 400, 30])
    jobs = jobs_for(folder, "1s", 4, None)
    on_ray = run_ray(jobs, "local", 2)
    assert [r["digest"] for r in on_ray] == [r["digest"] for r in run_local(jobs, 1)]


@pytest.mark.slow
def test_features_on_a_folder_from_the_command_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [8, 9], [250, 120])
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "features", str(folder), "--workers", "2",
         "--out", str(out), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["captures"] == 2
    assert summary["failed"] == 0
    for capture in folder.iterdir():
        single = tmp_path / f"{capture.name}.single.npz"
        one = subprocess.run(
            [sys.executable, "-m", "agent.cli", "features", str(capture), "--out", str(single)],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert one.returncode == 0, one.stderr
        with np.load(single) as want, np.load(out / f"{capture.name}.npz") as got:
            for key in want.files:
                np.testing.assert_array_equal(got[key], want[key])


def test_an_empty_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "features", str(tmp_path), "--workers", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no .pcap" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
