"""Checking and reading what an operator hands to ``iotids provision``; nothing is written here.

Every value ends up in a file a shell, systemd, TOML or FAT reads on the gateway: what cannot be
represented there safely is refused (ProvisionError, one line naming the option, exit 2).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from agent.broker_url import PASSWORD_ENV, USERNAME_ENV, BrokerUrl, BrokerUrlError, parse_broker_url

# Keys, a CA file and a password are small; a bundle has its own cap (MAX_BUNDLE_BYTES).
MAX_INPUT_BYTES = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# DOS device names: FAT (mtools) refuses a file called so, half-way through writing an image.
_DOS_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)
# Wheel names cannot be changed (pip reads them); these are the ones FAT and the shell hold as is.
_WHEEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+!-]*\.whl")


class ProvisionError(Exception):
    """Bad input to provisioning: one line for the user, exit status 2."""


@dataclass(frozen=True)
class Credentials:
    """MQTT login for the device; written only as 0600 credential files, never into agent.toml."""

    username: str
    password: str | None


def parse_broker(url: str) -> BrokerUrl:
    """``mqtt://host:1883`` or ``mqtts://host:8883``, parsed as every iotids command does."""
    try:
        return parse_broker_url(url)
    except BrokerUrlError as exc:
        raise ProvisionError(f"--broker: {exc}") from None


def check_interface(interface: str) -> str:
    """``--interface``, held to the rule the board profiles' interfaces are."""
    from agent.config import FieldError
    from firmware_configs.profiles import CaptureProfile

    try:
        CaptureProfile(interface)
    except FieldError as exc:
        raise ProvisionError(f"--interface: {exc}") from None
    return interface


def check_device_id(device_id: str) -> str:
    """The device id, checked by the agent's own rule (one MQTT topic level)."""
    from agent.config import AgentSection, FieldError

    try:
        AgentSection(device_id=device_id)
    except FieldError as exc:
        raise ProvisionError(f"--device-id: {exc}") from None
    return device_id


def read_input(option: str, path: Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A file the user named, whole; ProvisionError names the option when it cannot be read.

    At most ``limit`` bytes are read: /dev/zero or a wrong file must not exhaust memory.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ProvisionError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise ProvisionError(f"{option}: {path} is empty")
    if len(data) > limit:
        raise ProvisionError(f"{option}: {path} is larger than {limit:,} bytes")
    return data


def read_credentials(
    password_file: Path | None, username: str | None, device_id: str
) -> Credentials | None:
    """MQTT login from --username / --password-file, else the environment; None when anonymous.

    With a password and no user name the device id is the user name: the broker examples give
    each gateway a user named after it, so the ACL's ``%u`` is its topic level.
    """
    user = username or os.environ.get(USERNAME_ENV, "")
    if any(not c.isprintable() for c in user):
        # Brokers refuse control characters in a user name (Mosquitto closes the connection),
        # and the agent strips a trailing newline off the credential file.
        source = "--username" if username else USERNAME_ENV
        raise ProvisionError(f"{source}: the MQTT user name must not contain control characters")
    password: str | None = os.environ.get(PASSWORD_ENV) or None
    if password_file is not None:
        try:
            password = read_input("--password-file", password_file).decode("utf-8")
        except UnicodeDecodeError:
            raise ProvisionError("--password-file: the password is not UTF-8 text") from None
        password = password.rstrip("\r\n")
        if not password:
            raise ProvisionError("--password-file: the password is empty")
    if password is not None and not user:
        user = device_id
    if not user:
        return None
    return Credentials(user, password)


def read_ca(path: Path) -> bytes:
    """``--ca-file``: PEM certificates, as the gateway's TLS loads them (cafile= takes only PEM)."""
    import ssl

    data = read_input("--ca-file", path)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        raise ProvisionError(f"--ca-file: {path} holds no PEM certificate") from None
    return data


def read_wheelhouse(folder: Path | None) -> tuple[Path, ...]:
    """The wheels to ship on the boot partition; the iotids wheel itself must be one of them."""
    if folder is None:
        return ()
    if not folder.is_dir():
        raise ProvisionError(f"--wheelhouse: {folder} is not a directory")
    wheels = tuple(sorted(folder.glob("*.whl")))
    odd = [w.name for w in wheels if not _WHEEL_NAME.fullmatch(w.name)]
    if odd:
        raise ProvisionError(f"--wheelhouse: {', '.join(odd)} in {folder}: not a wheel file name")
    check_fat_names("--wheelhouse", [w.name for w in wheels])
    unreadable = [w.name for w in wheels if not (w.is_file() and os.access(w, os.R_OK))]
    if unreadable:
        raise ProvisionError(f"--wheelhouse: cannot read {', '.join(unreadable)} in {folder}")
    if not any(w.name.startswith("iotids-") for w in wheels):
        raise ProvisionError(
            f"--wheelhouse: no iotids-*.whl in {folder} (make one: iotids provision wheelhouse)"
        )
    return wheels


def safe_name(name: str) -> str:
    """A file name that FAT, the shell and the gateway take as is.

    FAT drops a trailing dot, install.sh's ``"$from"/*`` skips a leading one and mtools refuses
    DOS device names: each would leave agent.toml naming a file the gateway does not have.
    """
    name = _SAFE_NAME.sub("_", name) or "_"
    if name.startswith("."):
        name = "_" + name[1:]
    if name.endswith("."):
        name = name[:-1] + "_"
    return "_" + name if _DOS_DEVICE.fullmatch(name) else name


def check_fat_names(option: str, names: list[str]) -> None:
    """FAT names are case-insensitive: two names one folder cannot hold would overwrite."""
    if len({name.casefold() for name in names}) != len(names):
        raise ProvisionError(f"{option}: two files share a name on FAT (case-insensitive): {names}")


def read_keys(paths: list[Path]) -> tuple[tuple[str, bytes], ...]:
    """The trusted signing keys, each under a distinct safe file name."""
    keys = tuple((safe_name(p.name), read_input("--trust-key", p)) for p in paths)
    check_fat_names("--trust-key", [name for name, _ in keys])
    return keys
