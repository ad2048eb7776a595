"""A real Mosquitto for tests: per-test config, TLS, passwords, ACL, stop/restart on one port.

Reusable by any test package (the report tests use it through their ``broker`` fixture; the
full-agent tests can do the same). Everything it writes lives in the directory it is given.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt_client import make_client, url_tls_context

REPO = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
EXAMPLE_ACL = REPO / "firmware_configs" / "mosquitto" / "acl"
EXAMPLE_CONF = REPO / "firmware_configs" / "mosquitto" / "mosquitto.conf"
HOST = "127.0.0.1"
# Lines of the example mosquitto.conf that shape who may connect as whom (not its paths).
_IDENTITY_OPTIONS = ("use_username_as_clientid",)


def example_listener_options() -> list[str]:
    """The identity options the example mosquitto.conf sets, as written there."""
    lines = EXAMPLE_CONF.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip().split(" ")[0] in _IDENTITY_OPTIONS]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- PKI ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A test CA and a server certificate it signed (PEM files)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(
    directory: Path,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ips: Iterable[str] = (HOST,),
    ca_name: str = "iotids test CA",
    server_valid_in: dt.timedelta = dt.timedelta(0),
) -> Pki:
    """Generate a CA and a server certificate for ``dns_names`` / ``ips`` into ``directory``
    (the server's valid from ``server_valid_in`` from now: a clock behind it refuses it)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iotids test broker")]))
        .issuer_name(ca_subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + server_valid_in - dt.timedelta(minutes=5))
        .not_valid_after(now + server_valid_in + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, pki.ca_key)
    _write_key(server_key, pki.server_key)
    return pki


# --- the broker ---------------------------------------------------------------------------------


class Broker:
    """One ``/usr/sbin/mosquitto`` on a loopback port, configured for one test."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: Pki | None = None,
        users: Mapping[str, str] | None = None,
        acl_file: Path | None = None,
        persistence: bool = True,
        options: Iterable[str] = (),
    ) -> None:
        if not Path(MOSQUITTO).is_file():
            pytest.skip(f"{MOSQUITTO} is not installed (Debian package mosquitto)")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.tls = tls
        self.users = dict(users or {})
        self.acl_file = acl_file
        self.persistence = persistence
        self.options = tuple(options)  # listener lines, e.g. from example_listener_options()
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        """Write mosquitto.conf (and the password file) for this broker."""
        lines = [
            f"listener {self.port} {self.host}",
            *self.options,
            # As root, mosquitto would switch to user 'mosquitto', who cannot read tmp_path.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            "log_timestamp true",
            "max_queued_messages 100000",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "tls_version tlsv1.2",
            ]
        if self.users:
            passwd = self.workdir / "passwd"
            passwd.write_text("")
            for name, password in self.users.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(passwd), name, password],
                    check=True,
                    capture_output=True,
                )
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            return
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}{self.log()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not accept on port {self.port} in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: persistence is saved) and wait for the exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipes()

    def kill(self) -> None:
        """SIGKILL the broker (teardown, or to simulate a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_pipes()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def _close_pipes(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def log(self) -> str:
        """The broker's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count(self, text: str) -> int:
        """How many log lines contain ``text``."""
        return sum(text in line for line in self.log().splitlines())


# --- a test client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message a probe saw."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


class Probe:
    """A paho client for assertions: subscribes, records every message, publishes and waits.

    With ``clean=False`` the broker keeps its session (and queues QoS 1 messages for it) across
    the probe's or the broker's restarts, so an outage test loses nothing on the probe's side.
    """

    def __init__(
        self,
        broker: Broker,
        topics: Iterable[str] = (),
        *,
        client_id: str = "probe",
        username: str | None = None,
        password: str | None = None,
        clean: bool = True,
    ) -> None:
        self.broker = broker
        self.topics = list(topics)
        self.messages: queue.Queue[Received] = queue.Queue()
        self.seen: list[Received] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = make_client(
            client_id,
            clean_session=clean,
            username=username,
            password=password,
            tls=url_tls_context(str(broker.tls.ca_cert)) if broker.tls is not None else None,
            backoff=(1, 1),
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def __enter__(self) -> Probe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe, and wait for the SUBACK."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=5)
        self.client.loop_start()
        if self.topics and not self.subscribed.wait(timeout):
            raise TimeoutError("probe did not get its SUBACK")
        if not self.topics and not self.connected.wait(timeout):
            raise TimeoutError("probe did not connect")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 5.0
    ) -> None:
        """Publish and wait until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float = 10.0
    ) -> Received | None:
        """The first new message matching ``predicate`` within ``timeout`` (None if none came)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if predicate(message):
                return message
        return None

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            return
        self.connected.set()
        if self.topics:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), message.qos
        )
        self.seen.append(received)
        self.messages.put(received)
