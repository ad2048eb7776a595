"""Configs that ``run`` would die on are refused by ``validate-config`` and ``run`` alike.

Each case is one line on stderr naming the key path, and exit 2, from both commands, before
any thread starts (the stats thread dying on ``Event.wait(1e300)``, paho's on a topic filter
the broker refuses, a traceback on a state directory that cannot be written ...).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main as iotids
from tests.broker import REPO


def _toml(tmp_path: Path, agent: str = "", rest: str = "") -> str:
    return f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n{agent}\n{rest}'


def _sensors(topic: str, extra: str = "") -> str:
    return (
        '[[sources]]\nname = "plant"\nkind = "mqtt-sensors"\n'
        f'topics = [{{ topic = "{topic}", sensor = "temp"{extra} }}]\n'
    )


CASES: dict[str, tuple[str, str, str]] = {
    # name: (extra [agent] lines, the rest of the file, the key path the line must start with)
    "stats_interval huge": ("stats_interval = 1e300", "", "agent.stats_interval: "),
    "stats_interval tiny": ("stats_interval = 1e-300", "", "agent.stats_interval: "),
    "replay_rate tiny": ("", "[mqtt]\nreplay_rate = 1e-300\n", "mqtt.replay_rate: "),
    "backoff_max huge": ("", "[mqtt]\nbackoff_max = 1e300\n", "mqtt.backoff_max: "),
    "auth_backoff huge": ("", "[mqtt]\nauth_backoff = 1e300\n", "mqtt.auth_backoff: "),
    "client id 70,000 bytes": ("", f'[mqtt]\nclient_id = "{"c" * 70_000}"\n', "mqtt.client_id: "),
    "client id with NUL": ("", '[mqtt]\nclient_id = "a\\u0000b"\n', "mqtt.client_id: "),
    "topic prefix 70,000 bytes": (
        "",
        f'[mqtt]\ntopic_prefix = "{"p" * 70_000}"\n',
        "mqtt.topic_prefix: ",
    ),
    "topic prefix +": ("", '[mqtt]\ntopic_prefix = "a/+/b"\n', "mqtt.topic_prefix: "),
    "topic prefix #": ("", '[mqtt]\ntopic_prefix = "a/#"\n', "mqtt.topic_prefix: "),
    "topic prefix NUL": ("", '[mqtt]\ntopic_prefix = "a\\u0000"\n', "mqtt.topic_prefix: "),
    "topic prefix $SYS": ("", '[mqtt]\ntopic_prefix = "$SYS/x"\n', "mqtt.topic_prefix: "),
    "discovery prefix #": (
        "",
        '[mqtt.homeassistant]\ndiscovery_prefix = "#"\n',
        "mqtt.homeassistant.discovery_prefix: ",
    ),
    "device id +": ("", "", "agent.device_id: "),  # device_id patched below
    "device id NUL": ("", "", "agent.device_id: "),
    "topic filter a/#/b": ("", _sensors("a/#/b"), "sources[0].topics[0].topic: "),
    "topic filter a+/b": ("", _sensors("a+/b"), "sources[0].topics[0].topic: "),
    "topic filter 70,000 bytes": ("", _sensors("t" * 70_000), "sources[0].topics[0].topic: "),
    "value mapping not a number": (
        "",
        _sensors("plant/door", ', values = { open = "yes" }'),
        "sources[0].topics[0].values.open: ",
    ),
    "missing ca_file": ("", '[mqtt.tls]\nca_file = "/nonexistent/ca.pem"\n', "mqtt.tls.ca_file: "),
    "unknown kernels": ('kernels = "fastest"', "", "agent.kernels: "),
    "missing trusted key": ('trusted_keys = ["/nonexistent/k.pub"]', "", "agent.trusted_keys[0]: "),
}


def _config_file(tmp_path: Path, name: str) -> Path:
    agent, rest, _ = CASES[name]
    text = _toml(tmp_path, agent, rest)
    if name == "device id +":
        text = text.replace('device_id = "gw"', 'device_id = "g+w"')
    if name == "device id NUL":
        text = text.replace('device_id = "gw"', 'device_id = "g\\u0000w"')
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_config_and_run_refuse_alike(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_file(tmp_path, name)
    key = CASES[name][2]
    for command in (["validate-config", str(path)], ["run", "--config", str(path)]):
        assert iotids(["agent", *command]) == 2, (name, command)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err[:500]
        assert lines[0].startswith(f"iotids agent: {key}"), lines[0][:200]
        assert len(lines[0]) < 400  # a 70,000-byte value is not echoed back whole


def test_a_good_config_still_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        _toml(tmp_path, "stats_interval = 0.5", _sensors("plant/+/temp", ", values = { on = 1 }"))
    )
    assert iotids(["agent", "validate-config", str(path)]) == 0
    assert "ok (device gw, 1 sources, 0 models)" in capsys.readouterr().out
    assert not (tmp_path / "state").exists()  # validating changes nothing on the machine


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_unusable_state_dir_is_one_line(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    state = blocker if where == "a file" else blocker / "state"
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\ndevice_id = "gw"\nstate_dir = "{state}"\n')
    for command in (["validate-config", str(path)], ["run", "--config", str(path)]):
        assert iotids(["agent", *command]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("iotids agent: agent.state_dir: "), err
        assert "not a directory" in err
        assert len(err.splitlines()) == 1


@pytest.mark.parametrize("key", ["state_dir", "outbox"])
def test_a_path_name_too_long_for_the_file_system_is_one_line(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = tmp_path / ("a" * 300)  # past NAME_MAX: exists() itself raises
    path = tmp_path / "agent.toml"
    if key == "state_dir":
        path.write_text(f'[agent]\ndevice_id = "gw"\nstate_dir = "{long}"\n')
    else:
        path.write_text(_toml(tmp_path, rest=f'[outbox]\npath = "{long}"\n'))
    assert iotids(["agent", "validate-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    named = "agent.state_dir" if key == "state_dir" else "outbox.path"
    assert err.startswith(f"iotids agent: {named}: "), err
    assert "too long" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("what", ["directory", "not-sqlite"])
def test_an_unusable_outbox_file_is_refused_by_validate_config_as_by_run(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "outbox-target"
    if what == "directory":
        target.mkdir()
    else:
        target.write_text("somebody's notes, not a database\n")
    path = tmp_path / "agent.toml"
    path.write_text(_toml(tmp_path, rest=f'[outbox]\npath = "{target}"\n'))
    assert iotids(["agent", "validate-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iotids agent: outbox.path: "), err
    assert "nothing was changed" in err
    assert len(err.splitlines()) == 1
    assert target.is_dir() if what == "directory" else target.is_file()


def test_file_only_skips_the_machine_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_file(tmp_path, "missing ca_file")
    assert iotids(["agent", "validate-config", "--file-only", str(path)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("command", ["validate-config", "run"])
def test_deeply_nested_toml_is_one_line_from_the_process(tmp_path: Path, command: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_toml(tmp_path, "x = " + "[" * 5_000 + "]" * 5_000))
    args = [str(path)] if command == "validate-config" else ["--config", str(path)]
    result = subprocess.run(
        [sys.executable, "-m", "agent", command, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert "not valid TOML: arrays or tables nested too deeply" in lines[0]


def test_oversized_config_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_toml(tmp_path) + "# " + "x" * (2 * 1024 * 1024) + "\n")
    assert iotids(["agent", "validate-config", str(path)]) == 2
    assert "larger than" in capsys.readouterr().err


def test_validate_config_opens_replays_and_verifies_bundles_as_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.pcap"
    notes.write_text("not a capture\n")
    plant = tmp_path / "plant.csv"
    plant.write_text("time,temp\n1,2\n")
    junk = tmp_path / "model.bundle"
    junk.write_bytes(b"PK not really a zip")
    cases = {
        f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{notes}"\n': (
            "sources[0] (lan): ",
            "not a pcap or pcapng capture",
        ),
        f'[[sources]]\nname = "p"\nkind = "csv"\npath = "{plant}"\nsensors = ["temp"]\n': (
            "sources[0] (p): ",
            "no column 'timestamp'",
        ),
        (
            '[[sources]]\nname = "h"\nkind = "host"\n'
            f'[[models]]\nname = "m"\nbundle = "{junk}"\nsource = "h"\n'
        ): ("models[0].bundle: ", "not a zip archive"),
    }
    for rest, (key, reason) in cases.items():
        path = tmp_path / "agent.toml"
        path.write_text(_toml(tmp_path, "", "[mqtt]\nenabled = false\n" + rest))
        for command in (["validate-config", str(path)], ["run", "--config", str(path)]):
            assert iotids(["agent", *command]) == 2, (rest, command)
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"iotids agent: {key}"), err
            assert reason in err
            assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_deployable_config_with_a_signed_bundle_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.agent.flood_bundle import flood_kit

    kit = flood_kit(tmp_path / "kit")
    path = tmp_path / "agent.toml"
    path.write_text(
        _toml(tmp_path, f'trusted_keys = ["{kit.public_key}"]', "[mqtt]\nenabled = false\n")
        + f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{kit.capture}"\n'
        + f'[[models]]\nname = "cnn"\nbundle = "{kit.bundle}"\nsource = "lan"\n'
    )
    assert iotids(["agent", "validate-config", str(path)]) == 0
    assert "ok (device gw, 1 sources, 1 models)" in capsys.readouterr().out
