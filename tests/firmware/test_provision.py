"""``iotids provision``: a device's first-boot files, secrets kept secret, bad input refused."""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli import main
from agent.config import load_config
from agent.features.host import HOST_V1
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec
from firmware_configs.profiles import available_profiles, load_profile
from firmware_configs.provision import FileSpec, write_tree
from tests.broker import make_pki
from tests.firmware.fixtures import Inputs, signed_bundle

EXPECTED = {
    "firstrun.sh",
    "user-data",
    "iotids/install.sh",
    "iotids/iotids-install.service",
    "iotids/agent.toml",
    "iotids/iotids-agent.service",
    "iotids/journald-iotids.conf",
    "iotids/bundles/traffic-cnn.iotb",
    "iotids/keys/release.pub",
    "iotids/credentials/mqtt-username",
    "iotids/credentials/mqtt-password",
    "operator/publish-discovery.sh",
}


def argv(inputs: Inputs, out: Path, *extra: str, profile: str = "pi4") -> list[str]:
    return [
        "provision",
        "--profile", profile,
        "--device-id", "gw-01",
        "--broker", "mqtts://broker.example.net:8883",
        "--bundle", str(inputs.bundle),
        "--trust-key", str(inputs.key),
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def directives(unit: str) -> dict[str, list[str]]:
    """systemd's key=value lines (keys may repeat), comments and section headers dropped."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def rendered(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Inputs]:
    monkeypatch.setenv("IOTIDS_MQTT_USERNAME", "gw-01")
    out = tmp_path / "gw-01"
    assert main(argv(inputs, out, "--password-file", str(inputs.password_file))) == 0
    return out, inputs


def test_renders_every_file(rendered: tuple[Path, Inputs]) -> None:
    out, inputs = rendered
    assert files(out) == EXPECTED
    assert (out / "iotids/bundles/traffic-cnn.iotb").read_bytes() == inputs.bundle.read_bytes()
    assert (out / "iotids/keys/release.pub").read_bytes() == inputs.key.read_bytes()
    assert (out / "iotids/credentials/mqtt-username").read_text() == "gw-01"
    assert (out / "iotids/credentials/mqtt-password").read_text() == inputs.password
    assert (out / "firstrun.sh").stat().st_mode & 0o111
    assert (out / "iotids/install.sh").stat().st_mode & 0o111


def test_agent_config_loads_with_the_agent_loader(rendered: tuple[Path, Inputs]) -> None:
    out, _ = rendered
    config = load_config(out / "iotids/agent.toml")
    profile = load_profile("pi4")
    assert config.agent.device_id == "gw-01"
    assert config.agent.queue_size == profile.queues.queue_size
    assert config.agent.trusted_keys == ("/etc/iotids/keys/release.pub",)
    assert config.mqtt.host == "broker.example.net"
    assert config.mqtt.port == 8883
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.ca_file == ""
    assert config.outbox.max_messages == profile.queues.outbox_max_messages
    (source,) = config.sources
    assert source.kind == "live"
    assert source.options.interface == "eth0"  # type: ignore[union-attr]
    (model,) = config.models
    assert model.bundle == "/etc/iotids/bundles/traffic-cnn.iotb"
    assert model.source == source.name


def test_secrets_stay_secret(rendered: tuple[Path, Inputs]) -> None:
    out, inputs = rendered
    secret = inputs.password.encode()
    holders = {
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and secret in p.read_bytes()
    }
    assert holders == {"iotids/credentials/mqtt-password"}
    for name in ("mqtt-password", "mqtt-username"):
        assert stat.S_IMODE((out / "iotids/credentials" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "iotids/credentials").stat().st_mode) == 0o700
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for path in out.rglob("*"):
        assert not path.stat().st_mode & stat.S_IWOTH, path
    mqtt = tomllib.loads((out / "iotids/agent.toml").read_text())["mqtt"]
    assert not {"username", "password"} & set(mqtt)


def test_unit_has_the_hardening_and_the_profile_budget(rendered: tuple[Path, Inputs]) -> None:
    out, _ = rendered
    unit = directives((out / "iotids/iotids-agent.service").read_text())
    expected = {
        "User": ["iotids"],
        "ExecStart": ["/opt/iotids/venv/bin/iotids agent run --config /etc/iotids/agent.toml"],
        "AmbientCapabilities": ["CAP_NET_RAW"],
        "CapabilityBoundingSet": ["CAP_NET_RAW"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "StateDirectory": ["iotids"],
        "Restart": ["on-failure"],
        "RestartSec": ["5s"],
        "MemoryMax": ["512M"],
        "CPUQuota": ["300%"],
        "StandardOutput": ["journal"],
        "LoadCredential": [
            "mqtt-username:/etc/iotids/credentials/mqtt-username",
            "mqtt-password:/etc/iotids/credentials/mqtt-password",
        ],
    }
    for key, value in expected.items():
        assert unit.get(key) == value, key
    assert "$" not in (out / "iotids/iotids-agent.service").read_text()


def test_journald_drop_in_caps_the_journal(rendered: tuple[Path, Inputs]) -> None:
    out, _ = rendered
    journal = directives((out / "iotids/journald-iotids.conf").read_text())
    profile = load_profile("pi4")
    assert journal["SystemMaxUse"] == [f"{profile.journal.system_max_mb}M"]
    assert journal["RuntimeMaxUse"] == [f"{profile.journal.runtime_max_mb}M"]
    assert journal["RateLimitBurst"] == ["2000"]
    assert journal["Compress"] == ["yes"]


def _fake_root(tmp_path: Path, unit: Path) -> Path:
    """A root where the unit's binary and the system's own units exist, for systemd-analyze."""
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for binary in (root / "opt/iotids/venv/bin/iotids", root / "opt/iotids/install.sh"):
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    return root


def test_systemd_analyze_verify_accepts_the_units(
    rendered: tuple[Path, Inputs], tmp_path: Path
) -> None:
    if shutil.which("systemd-analyze") is None or not Path("/lib/systemd/system").is_dir():
        pytest.skip("systemd-analyze is not installed here")
    out, _ = rendered
    for unit in (out / "iotids/iotids-agent.service", out / "iotids/iotids-install.service"):
        root = _fake_root(tmp_path / unit.stem, unit)
        command = ["systemd-analyze", "verify", "--man=no", f"--root={root}"]
        result = subprocess.run(
            [*command, f"/etc/systemd/system/{unit.name}"], capture_output=True, text=True
        )
        # Unknown keys and bad values are warnings on stderr with exit 0: demand silence.
        assert (result.returncode, result.stderr) == (0, ""), unit.name


def test_promiscuous_adds_cap_net_admin(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "gw"
    assert main(argv(inputs, out, "--promiscuous", "--interface", "eth1")) == 0
    unit = directives((out / "iotids/iotids-agent.service").read_text())
    assert unit["AmbientCapabilities"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    source = load_config(out / "iotids/agent.toml").sources[0].options
    assert (source.interface, source.promiscuous) == ("eth1", True)  # type: ignore[union-attr]


@pytest.mark.parametrize("profile", available_profiles())
def test_every_profile_renders_a_loadable_config(
    inputs: Inputs, tmp_path: Path, profile: str
) -> None:
    out = tmp_path / profile
    assert main(argv(inputs, out, profile=profile)) == 0
    config = load_config(out / "iotids/agent.toml")
    board = load_profile(profile)
    assert config.sources[0].options.interface == board.capture.interface  # type: ignore[union-attr]
    unit = directives((out / "iotids/iotids-agent.service").read_text())
    assert unit["MemoryMax"] == [f"{board.service.memory_max_mb}M"]
    assert unit["CPUQuota"] == [f"{board.service.cpu_quota_percent}%"]
    assert "LoadCredential" not in unit  # no credentials given: nothing for systemd to load


def test_credentials_from_the_environment(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOTIDS_MQTT_USERNAME", "gw-env")
    monkeypatch.setenv("IOTIDS_MQTT_PASSWORD", "from-env")
    out = tmp_path / "gw"
    assert main(argv(inputs, out)) == 0
    assert (out / "iotids/credentials/mqtt-password").read_text() == "from-env"
    assert (out / "iotids/credentials/mqtt-username").read_text() == "gw-env"


def test_the_user_name_defaults_to_the_device_id(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "gw"
    assert main(argv(inputs, out, "--password-file", str(inputs.password_file))) == 0
    assert (out / "iotids/credentials/mqtt-username").read_text() == "gw-01"
    assert (out / "iotids/credentials/mqtt-password").read_text() == inputs.password


def test_plain_mqtt_with_a_ca_file_and_a_wheelhouse(inputs: Inputs, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "iotids-0.1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + bytes(18))
    (wheels / "paho_mqtt-2.2.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + bytes(18))
    ca = make_pki(tmp_path / "pki").ca_cert
    out = tmp_path / "gw"
    args = argv(inputs, out, "--ca-file", str(ca), "--wheelhouse", str(wheels))
    assert main(args) == 0
    config = load_config(out / "iotids/agent.toml")
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.ca_file == "/etc/iotids/ca.crt"
    assert (out / "iotids/ca.crt").read_bytes() == ca.read_bytes()
    assert {p.name for p in (out / "iotids/wheelhouse").iterdir()} == {
        "iotids-0.1.0-py3-none-any.whl",
        "paho_mqtt-2.2.0-py3-none-any.whl",
    }


def test_an_empty_out_folder_is_filled(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "gw"
    out.mkdir()
    assert main(argv(inputs, out)) == 0
    assert "iotids/agent.toml" in files(out)


def _bad(inputs: Inputs, tmp_path: Path, case: str) -> tuple[list[str], str]:
    """A command line with one thing wrong, and what the error must say."""
    out = tmp_path / "gw"
    base = argv(inputs, out)
    swap = {
        "profile": ("--profile", "pi9", r"--profile: unknown profile 'pi9' \(valid: cm4, pi3b"),
        "device": ("--device-id", "gw/01", r"--device-id: must be 1\.\.64 characters .*'gw/01'"),
        "device-wildcard": ("--device-id", "gw+", r"--device-id: .*got 'gw\+'"),
        "bundle": ("--bundle", str(tmp_path / "no.iotb"), r"--bundle: cannot read .*: No such"),
        "bundle-dir": ("--bundle", str(tmp_path), r"--bundle: cannot read .*: Is a directory"),
        "key": ("--trust-key", str(tmp_path / "absent.pub"), r"--trust-key: cannot read .*\.pub"),
        "scheme": ("--broker", "http://broker:80", r"--broker: .* must start with mqtt:// or"),
        "port": ("--broker", "mqtts://broker:70000", r"--broker: .* the port must be 1-65535"),
        "no-host": ("--broker", "mqtt://:1883", r"--broker: .* the host is missing"),
        "secret-url": ("--broker", "mqtts://gw:hunter2@b:8883", r"--broker: .* credentials do not"),
    }
    if case in swap:
        option, value, message = swap[case]
        base[base.index(option) + 1] = value
        return base, message
    if case == "ca-plain":
        base[base.index("--broker") + 1] = "mqtt://broker"
        return [*base, "--ca-file", str(inputs.key)], r"--ca-file: only an mqtts:// broker"
    if case == "empty-password":
        empty = tmp_path / "empty"
        empty.write_text("\n")
        return [*base, "--username", "u", "--password-file", str(empty)], r"password is empty"
    if case == "wheelhouse":
        return [*base, "--wheelhouse", str(tmp_path)], r"--wheelhouse: no iotids-\*\.whl"
    if case == "missing":
        return base[:-2], r"--out is required"
    assert case == "out-taken"
    out.mkdir()
    (out / "keep").write_text("x")
    return base, r"--out: .* already exists and is not an empty folder"


BAD_CASES = [
    "profile", "device", "device-wildcard", "bundle", "bundle-dir", "key", "scheme", "port",
    "no-host", "secret-url", "ca-plain", "empty-password", "wheelhouse",
    "missing", "out-taken",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    args, message = _bad(inputs, tmp_path, case)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert re.search(message, line), line
    assert "hunter2" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out, no temp folder


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "gw"
    spec = {
        Path("a.txt"): FileSpec(b"a"),
        Path("z/wheel.whl"): FileSpec(tmp_path / "vanished.whl"),
    }
    with pytest.raises(FileNotFoundError):
        write_tree(spec, out)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def _rezip(bundle: bytes, old: bytes, new: bytes) -> bytes:
    """The bundle with its manifest edited after signing (the zip itself stays valid)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(old, new) if name == "manifest.json" else data)
    return out.getvalue()


def _bundle_case(tmp_path: Path, inputs: Inputs, case: str) -> Path:
    """A bundle file that a gateway would refuse, for the reason named by ``case``."""
    if case == "not-a-zip":
        data = b"IOTB" + bytes(64)
    elif case == "unsigned":
        data = signed_bundle(None)
    elif case == "untrusted":
        data = signed_bundle(Ed25519PrivateKey.generate())
    elif case == "tampered":
        data = _rezip(inputs.bundle.read_bytes(), b'"flood-int8-fixture"', b'"flood-int8-altered"')
    else:
        assert case == "telemetry"
        data = signed_bundle(inputs.signer, FeatureSet("telemetry", 1, ("temp", "temp_delta")))
    path = tmp_path / "bad.iotb"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not-a-zip", r"--bundle: bundle file: not a zip archive"),
        ("unsigned", r"--bundle: bundle signature: unsigned bundle"),
        ("untrusted", r"--bundle: bundle signature: signed by untrusted key [0-9a-f]{16}$"),
        ("tampered", r"--bundle: bundle signature: invalid for trusted key"),
        ("telemetry", r"--bundle: feature set telemetry-v1 needs sensor sources"),
    ],
)
def test_a_bundle_the_gateway_would_refuse_is_refused_now(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    bundle = _bundle_case(tmp_path, inputs, case)
    out = tmp_path / "gw"
    args = argv(inputs, out)
    args[args.index("--bundle") + 1] = str(bundle)
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.search(message, line), line
    assert not out.exists()


def test_a_key_that_is_not_ed25519_is_refused(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "garbage.pub"
    key.write_text("ssh-ed25519 AAAA not a PEM key\n")
    args = argv(inputs, tmp_path / "gw")
    args[args.index("--trust-key") + 1] = str(key)
    assert main(args) == 2
    assert (
        "--trust-key: garbage.pub: public key: neither PEM nor 32 raw bytes"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("step", "text"), [(StepSpec("time", 0.5), "0.5s"), (StepSpec("packets", 100.0), "100p")]
)
def test_the_source_steps_like_the_bundle(
    inputs: Inputs, tmp_path: Path, step: StepSpec, text: str
) -> None:
    inputs.bundle.write_bytes(signed_bundle(inputs.signer, step=step))
    out = tmp_path / "gw"
    assert main(argv(inputs, out)) == 0
    source = load_config(out / "iotids/agent.toml").sources[0]
    assert (source.step, source.step_spec) == (text, step)


def test_a_host_bundle_gets_a_host_source_and_no_capabilities(
    inputs: Inputs, tmp_path: Path
) -> None:
    inputs.bundle.write_bytes(signed_bundle(inputs.signer, HOST_V1))
    out = tmp_path / "gw"
    assert main(argv(inputs, out)) == 0
    config = load_config(out / "iotids/agent.toml")
    assert [(s.name, s.kind) for s in config.sources] == [("host", "host")]
    assert config.models[0].source == "host"
    unit = directives((out / "iotids/iotids-agent.service").read_text())
    assert unit["AmbientCapabilities"] == [""]
    assert unit["CapabilityBoundingSet"] == [""]


def test_a_float_bundle_on_a_small_board_is_flagged(
    inputs: Inputs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs.bundle.write_bytes(signed_bundle(inputs.signer, quantization="float32"))
    assert main(argv(inputs, tmp_path / "gw", profile="zero2w")) == 0
    assert "is float32; the zero2w profile expects int8" in caplog.text


def test_provision_json_lists_what_was_written(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main as iotids

    out = tmp_path / "gw-07"
    args = ["provision", "--profile", "pi4", "--device-id", "gw-07", "-o", str(out), "--json"]
    args += ["--broker", "mqtt://broker.example.net", "--bundle", str(inputs.bundle)]
    args += ["--trust-key", str(inputs.key), "--password-file", str(inputs.password_file)]
    assert iotids(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device_id"] == "gw-07"
    assert result["out"] == str(out)
    assert result["image"] is None
    assert "operator/publish-discovery.sh" in result["files"]
    for name in result["files"]:
        assert (out / name).is_file(), name
