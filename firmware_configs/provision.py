"""``iotids provision``: render one gateway's first-boot files, optionally into an SD card image.

The rendered folder mirrors the Raspberry Pi boot partition (``/boot/firmware``)::

    firstrun.sh  user-data                       first boot: Imager's hook / cloud-init
    iotids/imager-firstrun.sh                    (--image only) Imager's firstrun.sh, run first
    iotids/install.sh iotids-install.service     the installer both of them run
    iotids/agent.toml iotids-agent.service journald-iotids.conf
    iotids/credentials/mqtt-{username,password}  0600, consumed through LoadCredential=
    iotids/keys/*  iotids/bundles/*  iotids/ca.crt  iotids/wheelhouse/*.whl
    operator/publish-discovery.sh                for the operator, never written to the card

Everything is checked and read before anything is written, rendered into a temporary folder
beside ``--out`` and renamed into place at the end: a bad input leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import logging
import string
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from agent.broker_url import PASSWORD_ENV, USERNAME_ENV, BrokerUrl
from firmware_configs.image import OPERATOR_DIR
from firmware_configs.inputs import Credentials as Credentials
from firmware_configs.inputs import ProvisionError as ProvisionError
from firmware_configs.inputs import (
    check_device_id,
    check_interface,
    parse_broker,
    read_ca,
    read_credentials,
    read_input,
    read_keys,
    read_wheelhouse,
    safe_name,
)
from firmware_configs.tree import FileSpec as FileSpec
from firmware_configs.tree import write_files

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.features.steps import StepSpec
    from firmware_configs.profiles import BoardProfile

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ETC = PurePosixPath("/etc/iotids")
STATE_DIR = "/var/lib/iotids"


@dataclass(frozen=True)
class BundleFacts:
    """What a verified bundle decides about the config: which source feeds it, at what step."""

    bundle_id: str
    source_kind: str  # "live" (traffic-v1) or "host" (host-v1)
    step: str  # as [[sources]].step spells it: "1s", "0.5s", "100p"
    quantization: str
    signer: str


@dataclass(frozen=True)
class Request:
    """Everything one device's files are rendered from, already checked and read."""

    profile: BoardProfile
    device_id: str
    broker: BrokerUrl
    bundle: tuple[str, bytes]
    facts: BundleFacts
    trust_keys: tuple[tuple[str, bytes], ...]
    ca: bytes | None
    wheels: tuple[Path, ...]
    credentials: Credentials | None
    interface: str
    promiscuous: bool


# ---------------------------------------------------------------------------------------------
# checking the bundle (the other inputs: firmware_configs.inputs)


def _step_text(step: StepSpec) -> str:
    """A bundle's step as ``[[sources]].step`` spells it."""
    from agent.features.steps import StepSpec

    # ``text`` spells every kind ("1.0s", "20p", "20p/1.0s") as ``parse`` reads it back.
    text = step.text
    if StepSpec.parse(text) != step:
        raise ProvisionError(f'--bundle: step "{text}" has no exact spelling in agent.toml')
    return text


def inspect_bundle(data: bytes, keys: tuple[tuple[str, bytes], ...]) -> BundleFacts:
    """The checks a gateway makes before it loads the model, made here before it is flashed.

    Signature by one of the trusted keys, a sane manifest, the model's hash, and a feature set
    the rendered source computes with the same schema. Only the golden vectors are left to the
    device: they need its runtime.
    """
    from agent.bundle import (
        BundleError,
        Manifest,
        check_compatible,
        check_model_hash,
        check_signature,
        load_public_key,
        read_bundle,
    )
    from agent.features.host import HOST_V1
    from agent.features.traffic import TRAFFIC_V1

    public = []
    for name, key in keys:
        try:
            public.append(load_public_key(key))
        except ValueError as exc:
            raise ProvisionError(f"--trust-key: {name}: {exc}") from None
    sources = {TRAFFIC_V1.id: ("live", TRAFFIC_V1), HOST_V1.id: ("host", HOST_V1)}
    try:
        raw = read_bundle(data)
        signer = check_signature(raw, public)
        manifest = Manifest.from_json(raw.manifest_bytes)
        check_model_hash(manifest, raw.model_content)
        if manifest.feature_set not in sources:
            raise ProvisionError(
                f"--bundle: feature set {manifest.feature_set} needs sensor sources, which "
                f"provision cannot guess (it renders: {', '.join(sources)}); "
                "write [[sources]] by hand"
            )
        kind, feature_set = sources[manifest.feature_set]
        check_compatible(manifest, feature_set, manifest.step, manifest.window)
    except BundleError as exc:
        raise ProvisionError(f"--bundle: {exc}") from None
    step = _step_text(manifest.step)
    return BundleFacts(manifest.bundle_id, kind, step, manifest.quantization, signer)


# ---------------------------------------------------------------------------------------------
# rendering


def bundle_path(request: Request) -> PurePosixPath:
    """Where the factory bundle lives on the gateway (read-only; updates go to the state dir)."""
    return ETC / "bundles" / request.bundle[0]


def _source_name(request: Request) -> str:
    return "lan" if request.facts.source_kind == "live" else "host"


def _model_name(request: Request) -> str:
    return "traffic" if request.facts.source_kind == "live" else "host"


def _source_table(request: Request) -> dict[str, object]:
    """``[[sources]]`` feeding the bundle: live capture for traffic, psutil for host."""
    table: dict[str, object] = {
        "name": _source_name(request),
        "kind": request.facts.source_kind,
        "step": request.facts.step,
    }
    if request.facts.source_kind == "live":
        table.update(interface=request.interface, promiscuous=request.promiscuous)
    return table


def capabilities(request: Request) -> str:
    """Only what capture needs: none for host metrics, NET_ADMIN only for promiscuous mode."""
    if request.facts.source_kind != "live":
        return ""
    return "CAP_NET_RAW CAP_NET_ADMIN" if request.promiscuous else "CAP_NET_RAW"


AGENT_TOML_COMMENTS = {
    "mqtt.tls": "ca_file empty or absent: the system trust store",
    "mqtt.homeassistant": "The operator publishes this gateway's discovery "
    "(operator/publish-discovery.sh): the example broker keeps gateways out of homeassistant/.",
    "sources.step": "the bundle's step",
}


def agent_config(request: Request) -> AgentConfig:
    """The gateway's config: the profile's limits, the broker, the bundle's source and model."""
    from agent.config import parse_config

    profile, broker = request.profile, request.broker
    mqtt: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "homeassistant": {"enabled": False},  # true: the agent announces itself
    }
    if broker.tls:
        mqtt["tls"] = {"ca_file": str(ETC / "ca.crt")} if request.ca is not None else {}
    return parse_config(
        {
            "agent": {
                "device_id": request.device_id,
                "state_dir": STATE_DIR,
                "queue_size": profile.queues.queue_size,
                "trusted_keys": [str(ETC / "keys" / name) for name, _ in request.trust_keys],
            },
            "mqtt": mqtt,
            "outbox": {
                "max_messages": profile.queues.outbox_max_messages,
                "max_bytes": profile.queues.outbox_max_bytes,
            },
            "sources": [_source_table(request)],
            "models": [
                {
                    "name": _model_name(request),
                    "bundle": str(bundle_path(request)),
                    "source": _source_name(request),
                    "threads": profile.service.threads,
                }
            ],
        }
    )


def render_agent_config(request: Request) -> str:
    """``agent.toml``, rendered from the validated config (ConfigError if it would not load)."""
    from agent.config_render import render_config

    header = [
        f"Rendered by `iotids provision` for {request.device_id} "
        f"(profile {request.profile.name}: {request.profile.board}).",
        "MQTT credentials are not in this file: systemd passes them in (LoadCredential=).",
    ]
    return render_config(agent_config(request), header=header, comments=AGENT_TOML_COMMENTS)


def unit_value(value: object) -> str:
    """Text as a systemd unit or drop-in line holds it: ``%`` escaped, never a second line.

    A line break would start a new directive (``ExecStartPre=``), and a trailing backslash
    would join the next line: both are refused (ProvisionError).
    """
    text = str(value)
    if any(not c.isprintable() for c in text) or text.endswith("\\"):
        raise ProvisionError(f"{text!r} cannot be written into a systemd unit")
    return text.replace("%", "%%")


def _template(name: str, values: Mapping[str, object]) -> str:
    """Fill a shipped template; a missing value is a bug here, so KeyError propagates."""
    text = (HERE / name).read_text(encoding="utf-8")
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def render_unit(request: Request) -> str:
    """``iotids-agent.service`` with the profile's budget and only the capabilities needed."""
    profile = request.profile
    credentials = []
    if request.credentials is not None:
        credentials.append(f"LoadCredential=mqtt-username:{ETC}/credentials/mqtt-username")
        if request.credentials.password is not None:
            credentials.append(f"LoadCredential=mqtt-password:{ETC}/credentials/mqtt-password")
    return _template(
        "systemd/iotids-agent.service",
        {
            "device_id": unit_value(request.device_id),
            "profile": unit_value(profile.name),
            "board": unit_value(profile.board),
            "restart_sec": "5s",
            "credentials": "\n".join(credentials) or "# no MQTT credentials: anonymous broker",
            "capabilities": capabilities(request),
            "memory_high_mb": profile.service.memory_max_mb * 4 // 5,
            "memory_max_mb": profile.service.memory_max_mb,
            "cpu_quota_percent": profile.service.cpu_quota_percent,
        },
    )


def render_journald(profile: BoardProfile) -> str:
    """The journald drop-in: the profile's caps, files small enough to rotate often."""
    journal = profile.journal
    return _template(
        "journald/iotids.conf",
        {
            "profile": unit_value(profile.name),
            "system_max_mb": journal.system_max_mb,
            "system_max_file_mb": max(1, journal.system_max_mb // 8),
            "runtime_max_mb": journal.runtime_max_mb,
        },
    )


def plan(request: Request) -> dict[PurePosixPath, FileSpec]:
    """Every file of the rendered tree, relative to the boot partition's root."""
    from agent.config import parse_config
    from firmware_configs.discovery import SCRIPT, render_publish_script

    agent_toml = render_agent_config(request)
    parse_config(tomllib.loads(agent_toml))  # the agent must accept what we ship
    root, sub = PurePosixPath("."), PurePosixPath("iotids")
    files = {
        root / "firstrun.sh": FileSpec(HERE / "firstboot/firstrun.sh", 0o755),
        root / "user-data": FileSpec(HERE / "firstboot/user-data"),
        sub / "install.sh": FileSpec(HERE / "firstboot/install.sh", 0o755),
        sub / "iotids-install.service": FileSpec(HERE / "firstboot/iotids-install.service"),
        sub / "agent.toml": FileSpec(agent_toml.encode("utf-8")),
        sub / "iotids-agent.service": FileSpec(render_unit(request).encode("utf-8")),
        sub / "journald-iotids.conf": FileSpec(render_journald(request.profile).encode("utf-8")),
        sub / "bundles" / request.bundle[0]: FileSpec(request.bundle[1]),
        PurePosixPath(OPERATOR_DIR) / SCRIPT: FileSpec(
            render_publish_script(request.device_id).encode("utf-8"), 0o755
        ),
    }
    files.update({sub / "keys" / name: FileSpec(data) for name, data in request.trust_keys})
    files.update({sub / "wheelhouse" / w.name: FileSpec(w) for w in request.wheels})
    if request.ca is not None:
        files[sub / "ca.crt"] = FileSpec(request.ca)
    if request.credentials is not None:
        creds = sub / "credentials"
        files[creds / "mqtt-username"] = FileSpec(request.credentials.username.encode(), 0o600)
        if request.credentials.password is not None:
            password = request.credentials.password.encode("utf-8")
            files[creds / "mqtt-password"] = FileSpec(password, 0o600)
    return files


def check_out(out: Path) -> None:
    """``--out`` must be new (or an empty folder) inside an existing folder."""
    if not out.parent.is_dir():
        raise ProvisionError(f"--out: the folder {out.parent} does not exist")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ProvisionError(f"--out: {out} already exists and is not an empty folder")


def write_tree(files: Mapping[PurePosixPath, FileSpec], out: Path) -> None:
    """Check ``--out``, then write ``files`` there all at once (see ``firmware_configs.tree``)."""
    check_out(out)
    write_files(files, out)


# ---------------------------------------------------------------------------------------------
# the command


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``iotids provision`` and its ``wheelhouse`` subcommand."""
    from firmware_configs.profiles import available_profiles

    add = parser.add_argument
    add("--profile", metavar="NAME", help=f"board profile: {', '.join(available_profiles())}")
    add("--device-id", metavar="ID", help="the gateway's id: one MQTT topic level")
    add("--broker", metavar="URL", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    add("--bundle", metavar="FILE", type=Path, help="the signed model bundle to start with")
    add(
        "--trust-key",
        metavar="PUB",
        type=Path,
        action="append",
        default=[],
        help="public key the bundles are signed with (repeatable)",
    )
    add("--ca-file", metavar="FILE", type=Path, help="CA certificate of an mqtts:// broker")
    add("--wheelhouse", metavar="DIR", type=Path, help="wheels for an offline install")
    add("--username", help=f"MQTT user name (default: ${USERNAME_ENV}, else the device id)")
    add(
        "--password-file",
        metavar="FILE",
        type=Path,
        help=f"file holding the MQTT password (default: ${PASSWORD_ENV})",
    )
    add("--interface", metavar="IFACE", help="capture interface (default: the profile's)")
    add("--promiscuous", action="store_true", help="promiscuous capture (adds CAP_NET_ADMIN)")
    add("-o", "--out", metavar="DIR", type=Path, help="folder to create with the rendered files")
    add("--image", metavar="FILE", type=Path, help="also write them into this image's boot FAT")
    add("--json", action="store_true", help="print what was written as one JSON object")
    sub = parser.add_subparsers(dest="provision_command", metavar="{wheelhouse}")
    wheels = sub.add_parser("wheelhouse", help="download the agent's wheels for Pi OS 64-bit")
    wheels.add_argument(
        "-o",
        "--out",
        dest="wheelhouse_out",
        metavar="DIR",
        type=Path,
        required=True,
        help="wheel folder",
    )
    wheels.add_argument("--no-self", action="store_true", help="skip building the iotids wheel")


def build_request(args: argparse.Namespace) -> Request:
    """Check and read every input; nothing is written here."""
    from agent.bundle_archive import MAX_BUNDLE_BYTES
    from agent.config import ConfigError
    from firmware_configs.profiles import load_profile

    for option in ("profile", "device_id", "broker", "bundle", "out"):
        if getattr(args, option) is None:
            raise ProvisionError(f"--{option.replace('_', '-')} is required")
    if not args.trust_key:
        raise ProvisionError("--trust-key is required (the key the bundle is signed with)")
    try:
        profile = load_profile(args.profile)
    except ConfigError as exc:
        raise ProvisionError(f"--profile: {exc}") from None
    broker = parse_broker(args.broker)
    if args.ca_file is not None and not broker.tls:
        raise ProvisionError("--ca-file: only an mqtts:// broker uses a CA certificate")
    interface = profile.capture.interface if args.interface is None else args.interface
    check_interface(interface)
    bundle = read_input("--bundle", args.bundle, MAX_BUNDLE_BYTES)
    keys = read_keys(args.trust_key)
    facts = inspect_bundle(bundle, keys)
    if facts.quantization != profile.model.bundle_variant:
        logger.warning(
            "bundle %s is %s; the %s profile expects %s (RAM and speed on %s)",
            facts.bundle_id,
            facts.quantization,
            profile.name,
            profile.model.bundle_variant,
            profile.board,
        )
    return Request(
        profile=profile,
        device_id=check_device_id(args.device_id),
        broker=broker,
        bundle=(safe_name(args.bundle.name), bundle),
        facts=facts,
        trust_keys=keys,
        ca=None if args.ca_file is None else read_ca(args.ca_file),
        wheels=read_wheelhouse(args.wheelhouse),
        credentials=read_credentials(args.password_file, args.username, args.device_id),
        interface=interface,
        promiscuous=args.promiscuous or profile.capture.promiscuous,
    )


def provision(args: argparse.Namespace) -> dict[str, object]:
    """Render one device's files into ``--out`` and, with ``--image``, into the image."""
    from agent.config import ConfigError
    from firmware_configs.image import (
        boot_partition,
        check_fat,
        install_into_image,
        plan_first_boot,
    )

    request = build_request(args)
    if args.image is not None:
        part = boot_partition(args.image)
        check_fat(args.image, part)
        plan_first_boot(args.image, part)  # refuses a first boot it cannot chain, now
    try:
        files = plan(request)
    except ConfigError as exc:
        raise ProvisionError(f"the rendered agent.toml does not validate: {exc}") from None
    write_tree(files, args.out)
    logger.info("rendered %d files for %s into %s", len(files), request.device_id, args.out)
    if args.image is not None:
        install_into_image(args.image, args.out)
    if request.credentials is None:
        logger.warning(
            "no MQTT credentials given (%s): the broker must allow anonymous", USERNAME_ENV
        )
    elif request.credentials.username != request.device_id:
        logger.warning(
            "MQTT user %r is not the device id %r: the example broker's ACL lets a gateway "
            "publish only under iotids/<its user name>/",
            request.credentials.username,
            request.device_id,
        )
    image = None if args.image is None else str(args.image)
    written = sorted(str(name) for name in files)
    return {"device_id": request.device_id, "out": str(args.out), "files": written, "image": image}


def wheelhouse(args: argparse.Namespace) -> None:
    """Fill ``--out`` with the agent's aarch64 wheels, and the iotids wheel when it builds."""
    from firmware_configs.wheelhouse import build_self, download

    wheels = download(args.wheelhouse_out)
    logger.info("downloaded %d wheels into %s", len(wheels), args.wheelhouse_out)
    if not args.no_self and build_self(args.wheelhouse_out) is None:
        logger.warning("add an iotids wheel to %s before provisioning with it", args.wheelhouse_out)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when done, 2 on bad input (one line on stderr), 1 when writing or download failed."""
    from firmware_configs.image import ImageError
    from firmware_configs.wheelhouse import WheelhouseError

    try:
        if args.provision_command == "wheelhouse":
            wheelhouse(args)
        else:
            summary = provision(args)
            if args.json:
                print(json.dumps(summary))  # noqa: T201 - the result, for a script
    except (ProvisionError, ImageError) as exc:
        print(f"iotids provision: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's one line
        return 2
    except (WheelhouseError, OSError) as exc:
        print(f"iotids provision: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
