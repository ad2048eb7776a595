"""What holds the memory of ``agent run`` with one int8 model, and whether XNNPACK pays.

Four views: (1) resident MB added by each import the agent may need, all measured in one fresh
interpreter in the order the agent loads them, the optional ones last; (2) the running agent's
resident memory by mapping (``/proc/PID/smaps``: each shared library's pages, the heap, anonymous
memory) at its peak-RSS moment on a looping replay, when the peak came and the RSS at the run's
end, and the peak of the process tree's summed RSS (the agent plus its short-lived
signature-check child) and when it came, then the same with MQTT on (no TLS: paho imported with
``agent.deferred``'s stand-ins, as the agent does); both runs are held to the 60 MB target;
(3) the child's own peak; (4) the int8 CNN's latency per window and the resident memory it adds
with LiteRT's default XNNPACK delegate and without it.
Run: ``python -m benchmarks.memory [--quick]`` (it builds its own model).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.agent_replay import DATASETS, REPO, _vm_hwm_kb
from benchmarks.rows import row as table_row

NAME = "memory"
TARGET = "<= 60"
IMPORTS = (
    "numpy",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "ai_edge_litert.interpreter",
    "agent.app",
    "paho.mqtt.client",
    "psutil",
    "sqlite3",
)
# loaded only when their part is used, so not by this benchmark's run (MQTT off, a pcap source)
WALL_CAP = 20  # a run ends after this many times its CPU seconds of wall time, whatever the load
ONLY_WHEN = {"paho.mqtt.client": "MQTT on, no TLS", "psutil": "host source", "sqlite3": "outbox"}
PROBE_IMPORTS = """
import importlib, sys
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
last = rss()
print("python", last)
for name in sys.argv[1:]:
    if name == "ai_edge_litert.interpreter":  # as the agent imports it: without the __init__
        from agent.runtime import _without_package_init
        _without_package_init(name)
    elif name == "paho.mqtt.client":  # as `agent run` imports it with no [mqtt.tls]
        from agent.deferred import import_paho_without_tls
        import_paho_without_tls()
    else:
        importlib.import_module(name)
    now = rss()
    print(name, now - last)
    last = now
"""
PROBE_XNNPACK = """
import sys, time, numpy as np
from ai_edge_litert import interpreter as li
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
before = rss()
kw = {} if sys.argv[2] == "xnnpack" else {
    "experimental_op_resolver_type": li.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
it = li.Interpreter(model_content=open(sys.argv[1], "rb").read(), num_threads=1, **kw)
inp = it.get_input_details()[0]
it.resize_tensor_input(inp["index"], [32, *inp["shape"][1:]])
it.allocate_tensors()
x = np.zeros([32, *inp["shape"][1:]], np.int8)
it.set_tensor(inp["index"], x)
it.invoke()
began = time.process_time()
for _ in range(100):
    it.set_tensor(inp["index"], x)
    it.invoke()
print((time.process_time() - began) / 3200 * 1e6, rss() - before)
"""
# a fresh small launcher: a child's peak counts the image it was forked from before exec
LAUNCH_CHILD = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "agent.signature_child"], input=sys.stdin.buffer.read(),
               stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return table_row(NAME, case, metric, value, unit, target)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def import_costs() -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE_IMPORTS, *IMPORTS],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        name, mb = line.rsplit(" ", 1)
        case = f"import {name}" + (f" ({ONLY_WHEN[name]} only)" if name in ONLY_WHEN else "")
        rows.append(_row(case, "rss_added", round(float(mb), 1), "MB"))
    return rows


def by_mapping(pid: int) -> collections.Counter[str]:
    """Resident kB of a process by what is mapped: a package, a library, heap or anonymous."""
    found: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = parts[5] if len(parts) > 5 else "[anon]"
            if "site-packages/" in name:
                name = name.split("site-packages/")[1].split("/")[0]
            elif name.startswith("/"):
                name = name.rsplit("/", 1)[-1]
        elif parts and parts[0] == "Rss:":
            found[name] += int(parts[1])
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    """VmRSS of a process now, 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(status.split("VmRSS:")[1].split()[0]) if "VmRSS:" in status else 0


def _tree_rss_kb(pid: int) -> int:
    """VmRSS of a process plus its direct children (the signature child), 0 once it is gone."""
    total = 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return 0
    for each in (pid, *map(int, children)):
        try:
            if each != pid and Path(f"/proc/{each}/cmdline").read_bytes() == command:
                continue  # forked, not yet exec'd: it shares the agent's pages
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        if "VmRSS:" in status:
            total += int(status.split("VmRSS:")[1].split()[0])
    return total


def agent_run(
    folder: Path, bundle: Path, public: Path, seconds: float, mqtt: str = "enabled = false\n"
) -> list[dict[str, object]]:
    """The agent's peak and what holds it; ``mqtt`` is the body of its ``[mqtt]`` section."""
    capture = DATASETS / "mqttset_reduced_pcap" / "benign-train.pcap"
    config = folder / "mem.toml"
    config.write_text(
        f'[agent]\ndevice_id = "bench"\nstate_dir = "{folder / "state"}"\n'
        f'trusted_keys = ["{public}"]\nlog_level = "warning"\n[mqtt]\n{mqtt}'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{capture}"\nloop = true\n'
        f'[[models]]\nname = "cnn"\nbundle = "{bundle}"\nsource = "cap"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak_kb, at_peak, peak_at, last_kb = 0, collections.Counter[str](), 0.0, 0
    tree_kb, tree_at = 0, 0.0
    began = time.monotonic()
    # The run lasts ``seconds`` of the agent's CPU time, not wall time: on a loaded machine a
    # wall-clock run can end before the model is even loaded (a peak of 25-38 MB at load 19).
    deadline = began + seconds * WALL_CAP
    while _cpu_seconds(proc.pid) < seconds and time.monotonic() < deadline and proc.poll() is None:
        hwm = _vm_hwm_kb(proc.pid)
        if hwm > peak_kb:
            peak_kb, peak_at = hwm, time.monotonic() - began
            with contextlib.suppress(OSError):
                at_peak = by_mapping(proc.pid)
        last_kb = _rss_kb(proc.pid) or last_kb
        tree = _tree_rss_kb(proc.pid)
        if tree > tree_kb:
            tree_kb, tree_at = tree, time.monotonic() - began
        time.sleep(0.02)  # the signature child lives a fraction of a second
    proc.terminate()
    proc.wait(30)
    mqtt_on = not mqtt.startswith("enabled = false")
    case = "agent run, 1 int8 model" + (", MQTT on (local Mosquitto)" if mqtt_on else "")
    peak = round(peak_kb / 1024, 1)
    rows = [
        _row(case, "peak_rss", peak, "MB", TARGET),
        _row(case, "target", "met" if peak <= 60 else f"MISSED by {peak - 60:.1f} MB", "", TARGET),
        _row(case, "peak_at", round(peak_at, 2), "s"),
        _row(case, "rss_at_end", round(last_kb / 1024, 1), "MB"),
    ]
    if mqtt_on:
        for name, kb in at_peak.most_common(14):
            rows.append(_row(f"MQTT on resident: {name}", "rss", round(kb / 1024, 1), "MB"))
        return rows
    rows.append(
        _row(
            "agent run + signature child, summed",
            "peak_rss_sampled",
            round(tree_kb / 1024, 1),
            "MB",
        )
    )
    rows.append(_row("agent run + signature child, summed", "peak_at", round(tree_at, 2), "s"))
    for name, kb in at_peak.most_common(10):
        rows.append(_row(f"agent run resident: {name}", "rss", round(kb / 1024, 1), "MB"))
    return rows


def xnnpack(model: Path) -> list[dict[str, object]]:
    rows = []
    for mode in ("xnnpack", "builtin"):
        out = subprocess.run(
            [sys.executable, "-c", PROBE_XNNPACK, str(model), mode],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
        ).stdout.split()
        per_window = round(float(out[0]), 1)
        rows.append(_row(f"int8 CNN, {mode}, batch 32", "cpu_us_per_window", per_window, "us"))
        rows.append(_row(f"int8 CNN, {mode}", "rss_added", round(float(out[1]), 1), "MB"))
    return rows


def _with_mqtt(folder: Path, bundle: Path, public: Path, seconds: float) -> list[dict[str, object]]:
    """The same run publishing to a Mosquitto started here (paho, and ``ssl`` with it)."""
    from tests.broker import MOSQUITTO, Broker

    if not Path(MOSQUITTO).is_file():
        return [_row("agent run, MQTT on", "skipped", f"no {MOSQUITTO}", "")]
    broker = Broker(folder / "mosquitto", persistence=False)
    broker.start()
    try:
        mqtt = f'host = "{broker.host}"\nport = {broker.port}\n'
        return agent_run(folder, bundle, public, seconds, mqtt)
    finally:
        broker.kill()


def signature_child() -> list[dict[str, object]]:
    """The child's own peak: what a model push adds on top of the running agent for a moment."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agent.signature import _request

    key = Ed25519PrivateKey.generate()
    message = b"x" * 60_000  # a manifest of our largest size
    request = _request([key.public_key().public_bytes_raw()], key.sign(message), message)
    out = subprocess.run(
        [sys.executable, "-c", LAUNCH_CHILD],
        input=request,
        capture_output=True,
        env=_env(),
        check=True,
    ).stdout.decode()
    case = "signature child (at start-up and at a model push)"
    return [_row(case, "peak_rss", round(float(out.split()[-1]), 1), "MB")]


def run(quick: bool = False) -> list[dict[str, object]]:
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    from agent.features.traffic import TRAFFIC_V1
    from benchmarks import agent_replay as ar

    rows = import_costs()
    with tempfile.TemporaryDirectory(prefix="iotids-bench-mem-") as tmp:
        folder = Path(tmp)
        labels = ("benign", "ddos", "scan", "bruteforce")
        tflite = ar._cnn_int8(TRAFFIC_V1.width, len(labels))
        width = TRAFFIC_V1.width
        bundle, public = ar._bundle(
            folder,
            "cnn",
            tflite,
            window=ar.WINDOW,
            labels=labels,
            maxima=np.ones(width),
            model_type="cnn",
        )
        rows += agent_run(folder, bundle, public, 5 if quick else 12)
        rows += signature_child()
        rows += _with_mqtt(folder, bundle, public, 5 if quick else 12)
        rows += xnnpack(folder / "cnn.tflite")
    rows.append(_row("machine load", "loadavg_1min", round(os.getloadavg()[0], 2), ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="agent runs of 5 CPU-seconds instead of 12"
    )
    args = parser.parse_args()
    for row in run(args.quick):
        value = f"{row['value']!s:>10}"
        print(f"{row['case']:<52} {row['metric']:<18} {value} {row['unit']:<4} {row['target']}")


if __name__ == "__main__":
    main()
