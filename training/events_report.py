"""The event-level evaluation as markdown and a timeline plot (attack intervals vs detections)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.calibration import effects
from training.events import DENSE_PACKETS, DENSE_SECONDS, MAX_DETECTIONS, opening_phrase
from training.markdown import cell


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _calibration_line(calibration: dict[str, Any] | None) -> str:
    """Which thresholds decided: the bundle's, or a site calibration's (what it silenced)."""
    if not calibration:
        return "- thresholds: the bundle's own (no site calibration)"
    said = effects(calibration.get("thresholds") or {}, calibration.get("start_quiet_windows"))
    line = f"- thresholds: a site calibration ({calibration.get('windows')} windows"
    return line + f", {calibration.get('seconds', 0):.0f} s)" + "".join(f"; {s}" for s in said)


def markdown(result: dict[str, Any], plot: str | None = None) -> str:
    """Per attack: detected, time and packets to first alarm, label, detections; then benign."""
    s = result["summary"]
    lines = [
        f"# Event-level evaluation of {result['bundle']}",
        "",
        f"- step {result['step']}, window {result['window']}, padding {result['padding']}, "
        f"debounce {result.get('debounce', 'default')}",
        _calibration_line(result.get("calibration")),
        f"- attacks detected: {s['detected']} of {s['attacks']}; first alarm within "
        f"{DENSE_PACKETS} packets or {DENSE_SECONDS:g} s: {s['within_target']} of {s['attacks']}",
        f"- median to first alarm: {_fmt(s['median_packets_to_alarm'], 1)} packets, "
        f"{_fmt(s['median_seconds_to_alarm'])} s",
        f"- most detections for one attack: {s['max_detections_per_attack']} (target <= "
        f"{MAX_DETECTIONS}; {s['attacks_over_detection_target']} attacks over it); most "
        f"incidents: {s['max_incidents_per_attack']} (a recurrence counts with the one it recurs)",
        f"- false alarms: {s['false_alarms']} in {s['benign_hours']:.4f} h of benign traffic "
        f"({_fmt(s['false_alarms_per_hour'], 2)} per hour; {s['false_alarm_incidents']} "
        "incidents)",
        "",
        f"| capture | attack | start s | packets | first {DENSE_PACKETS} packets over (s) "
        "| detected | s to alarm | packets to alarm | reported (category) "
        "| detections (incidents) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["captures"]:
        for a in c["attacks"]:
            reported = f"{a['reported_label']} ({a['reported_category']})" if a["detected"] else "-"
            lines.append(
                f"| {cell(c['capture'])} | {cell(a['label'])} | {a['start_s']:.2f} "
                f"| {a['packets']} "
                f"| {opening_phrase(a.get('opening_s'))} "
                f"| {'yes' if a['detected'] else '**MISSED**'} | {_fmt(a['seconds_to_alarm'], 4)} "
                f"| {_fmt(a['packets_to_alarm'])} | {cell(reported)} | {a['detections']} "
                f"({a['incidents']}) |"
            )
    lines += ["", "| capture | benign seconds | false alarms (incidents) |", "|---|---|---|"]
    for c in result["captures"]:
        lines.append(
            f"| {cell(c['capture'])} | {c['benign_seconds']:.1f} | {c['false_alarms']} "
            f"({c['false_alarm_incidents']}) |"
        )
    if plot:
        lines += ["", f"![timeline]({plot})"]
    return "\n".join(lines) + "\n"


def plot_timeline(result: dict[str, Any], path: Path) -> Path:
    """One row per capture: attack intervals shaded, detections as bars (new to end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captures = result["captures"]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(captures) + 1.5))
    for row, c in enumerate(captures):
        for a in c["attacks"]:
            ax.broken_barh(
                [(a["start_s"], max(a["duration_s"], 0.01))], (row - 0.4, 0.8), color="#f4b6b6"
            )
        for start, end, _label in c["detections"]:
            ax.broken_barh([(start, max(end - start, 0.01))], (row - 0.2, 0.4), color="#1f4e9e")
    ax.set_yticks(range(len(captures)), [c["capture"] for c in captures], fontsize=7)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds from the capture's first packet (attack: red, detection: blue)")
    ax.set_title(f"{result['bundle']}: attacks vs detections")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write(result: dict[str, Any], out: Path) -> Path:
    """``events.json``, ``events.md`` and ``events_timeline.png`` in ``out``."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / "events.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    plot = plot_timeline(result, out / "events_timeline.png")
    report = out / "events.md"
    report.write_text(markdown(result, plot.name), encoding="utf-8")
    return report
