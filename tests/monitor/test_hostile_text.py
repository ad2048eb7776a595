"""What a publisher writes is shown on the operator's screen, never acted on by the terminal.

Any client the broker lets publish under the prefix (a compromised gateway on its own topics,
with the example ACL) chooses labels, categories, ids, statuses and bundle ids: the monitor
escapes their control characters and bounds their length, on the screen and in change lines.
"""

from __future__ import annotations

import io
import json
import re

from console.monitor_state import Fleet
from console.monitor_view import LineView, ScreenView, render

NOW = 1_800_000_000.0
OSC52 = "\x1b]52;c;aWQ7IGN1cmwgZXZpbC5leGFtcGxlIHwgc2g=\x07"
# what the monitor itself writes: colours, cursor home, clear, alternate screen, cursor on/off
OWN = re.compile(r"\x1b\[(?:\d*m|H|2J|\?1049[hl]|\?25[hl])")


def _hostile_fleet() -> tuple[Fleet, list[str]]:
    fleet = Fleet()
    event = {
        "id": "e1",
        "type": "new",
        "detection": "d1\x1b]0;all quiet\x07",
        "label": "syn_flood" + OSC52,
        "category": "flood\r\x1b[2K\x1b[8m",
        "labels": {"scan\n2026-01-01T00:00:00Z gw-02 offline": 3},
        "start": NOW,
    }
    model = {"bundle_id": "b\u202e1", "last_update": {"result": "ok\x08", "reason": "x\n" * 500}}
    lines = [
        *fleet.apply("iotids/gw-1/status", b"online\x1b]0;t\x07", NOW),
        *fleet.apply("iotids/gw-1/events", json.dumps(event).encode(), NOW),
        *fleet.apply("iotids/gw-1/model", json.dumps(model).encode(), NOW),
        *fleet.apply("iotids/" + "g\u202e" * 64 + "/status", b"online", NOW),
    ]
    return fleet, lines


def _raw_controls(text: str) -> list[str]:
    return [c for c in OWN.sub("", text) if not c.isprintable() and c != "\n"]


def test_change_lines_escape_what_a_publisher_wrote_and_stay_short() -> None:
    _, lines = _hostile_fleet()
    assert len(lines) == 4
    for line in lines:
        assert line.isprintable(), ascii(line)
        assert len(line) < 400
    assert "syn_flood\\x1b]52;c;" in lines[1]
    assert lines[2].startswith("gw-1 model b\\u202e1 (last update ok\\x08: x\\x0ax\\x0a")


def test_the_line_view_cannot_be_made_to_print_a_forged_line() -> None:
    fleet, lines = _hostile_fleet()
    out = io.StringIO()
    LineView(out).changed(lines, fleet, NOW)
    printed = out.getvalue().splitlines()
    assert len(printed) == len(lines)
    assert not any("gw-02 offline" in line and not line.count("\\x0a") for line in printed)


def test_the_screen_and_the_snapshot_show_no_control_character_of_a_publisher() -> None:
    fleet, lines = _hostile_fleet()
    out = io.StringIO()
    view = ScreenView(out, lambda: "HEADER")
    view.changed(lines, fleet, NOW)
    view.tick(fleet, NOW)
    view.close()
    assert _raw_controls(out.getvalue()) == []
    snapshot = render(fleet, NOW, "HEADER")
    assert _raw_controls(snapshot) == []
    assert max(len(line) for line in snapshot.splitlines()) < 400


def test_what_one_publisher_makes_the_monitor_keep_is_bounded() -> None:
    from console.monitor_state import MAX_ACTIVE

    fleet = Fleet()
    huge = "x" * 400_000  # two of them fit the contract's 1 MiB payload
    for n in range(MAX_ACTIVE + 10):
        body = {
            "id": f"e{n}",
            "type": "new",
            "detection": f"d{n}",
            "label": huge,
            "labels": {huge: 1},
        }
        fleet.apply("iotids/gw/events", json.dumps(body).encode(), NOW + n)
    gateway = fleet.gateways["gw"]
    assert len(gateway.active) == MAX_ACTIVE
    assert "d0" not in gateway.active  # the oldest left the active list
    assert f"d{MAX_ACTIVE + 9}" in gateway.active
    kept = gateway.active[f"d{MAX_ACTIVE + 9}"]
    assert len(kept.label) == 200
    assert [len(k) for k in kept.labels] == [200]
    # an id the de-duplicator would have to remember, a megabyte long: refused
    body = {"id": huge, "type": "new", "detection": "d", "label": "scan"}
    assert fleet.apply("iotids/gw/events", json.dumps(body).encode(), NOW) == []
    assert fleet.malformed == 1
    model = {"bundle_id": huge, "last_update": {"result": "refused", "reason": huge, "x": 1}}
    fleet.apply("iotids/gw/model", json.dumps(model).encode(), NOW)
    assert gateway.model is not None
    assert len(gateway.model["bundle_id"]) == 200
    assert set(gateway.model["last_update"]) == {"result", "reason"}
    assert len(gateway.model["last_update"]["reason"]) == 200


def test_a_publisher_inventing_gateways_cannot_grow_the_monitor(monkeypatch) -> None:
    import console.monitor_state as state

    monkeypatch.setattr(state, "MAX_GATEWAYS", 5)
    fleet = Fleet()
    for i in range(50):
        fleet.apply(f"iotids/gw-{i}/status", b"online", NOW)
    fleet.apply("iotids/" + "g" * 129 + "/status", b"online", NOW)
    assert sorted(fleet.gateways) == [f"gw-{i}" for i in range(5)]
    assert fleet.snapshot(NOW)["untracked_messages"] == 46
    assert fleet.apply("iotids/gw-4/status", b"offline", NOW) == ["gw-4 offline"]  # kept ones live
