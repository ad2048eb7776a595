"""paho without ``ssl``, ``hashlib`` and ``urllib.request`` when no TLS is configured.

Each case runs in a fresh interpreter: this one imported ``ssl`` long ago (the broker helpers
build certificates), and the stand-ins matter only where it is not yet imported.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.contract import Topics
from tests.agent import agent_run
from tests.agent.flood_bundle import REPO, FloodKit, flood_kit
from tests.broker import Broker, Probe, make_pki

pytestmark = pytest.mark.broker
OPENSSL = ("ssl", "_ssl", "hashlib", "_hashlib", "urllib.request")
# paho's socket reads and writes name ssl's errors in except clauses: with the stand-in in
# place a would-block and a reset must still come out as themselves, not as AttributeError.
EXCEPT_CLAUSES = """
import socket, sys
from agent.deferred import import_paho_without_tls
import_paho_without_tls()
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
print("LOADED_BY_IMPORT=" + ",".join(m for m in sys.argv[1:] if m in sys.modules))
client = mqtt.Client(CallbackAPIVersion.VERSION2)
server = socket.create_server(("127.0.0.1", 0))
client._sock = socket.create_connection(server.getsockname())
peer = server.accept()[0]
client._sock.setblocking(False)
def outcome(call):
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return "nothing"
print("RECV_EMPTY=" + outcome(lambda: client._sock_recv(10)))
peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
peer.close()  # linger 0: the peer resets the connection
import time; time.sleep(0.2)
print("RECV_RESET=" + outcome(lambda: client._sock_recv(10)))
print("SEND_AFTER=" + outcome(lambda: [client._sock_send(b"x" * 65536) for _ in range(64)]))
print("LOADED_BY_ERRORS=" + ",".join(m for m in sys.argv[1:] if m in sys.modules))
import ssl, hashlib  # later imports get the real modules, and paho's names follow them
print("REAL=" + str(mqtt.ssl.SSLWantReadError is ssl.SSLWantReadError))
print("SHA256=" + hashlib.sha256(b"").hexdigest()[:8])
print("SHA1=" + mqtt.hashlib.sha1(b"").hexdigest()[:8])
import urllib.request
print("PROXIES=" + str(mqtt.urllib.request.getproxies is urllib.request.getproxies))
"""
RUN_AND_LIST = """
import atexit, runpy, sys
watched = sys.argv[2:]
def report():
    import paho.mqtt.client as mqtt
    print("LOADED=" + ",".join(m for m in watched if m in sys.modules))
    print("PAHO_SSL_IS_REAL=" + str(mqtt.ssl is sys.modules.get("ssl")))
    print("LIBCRYPTO=" + str("libcrypto" in open("/proc/self/maps").read()))
atexit.register(report)
sys.argv = ["agent", "run", "--config", sys.argv[1]]
runpy.run_module("agent", run_name="__main__")
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("deferred"))


def _lines(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_paho_s_except_clauses_still_sort_would_block_and_reset() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXCEPT_CLAUSES, *OPENSSL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = _lines(done.stdout)
    assert found["LOADED_BY_IMPORT"] == "", done.stdout  # paho imported, none of the five
    assert found["RECV_EMPTY"] == "BlockingIOError"
    assert found["RECV_RESET"] == "ConnectionResetError"
    assert found["SEND_AFTER"] in {"BrokenPipeError", "ConnectionResetError"}
    assert found["LOADED_BY_ERRORS"] == "", done.stdout
    assert found["REAL"] == "True"
    assert (found["SHA256"], found["SHA1"]) == ("e3b0c442", "da39a3ee")
    assert found["PROXIES"] == "True"


def _config(folder: Path, kit: FloodKit, broker: Broker, tls: str = "") -> Path:
    return agent_run.agent_toml(kit, folder, agent_run.mqtt_toml(broker, tls))


def _stop(proc: agent_run.AgentProcess) -> tuple[str, str]:
    out, err = agent_run.stop(proc)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def test_plain_mqtt_agent_reconnects_after_a_broker_crash_without_openssl(
    kit: FloodKit, tmp_path: Path
) -> None:
    broker = Broker(tmp_path / "broker", persistence=False)
    broker.start()
    topics = Topics.for_device("iotids", "gw")
    config = _config(tmp_path, kit, broker)
    try:
        with (
            Probe(broker, [topics.events, topics.status]) as probe,
            agent_run.running(RUN_AND_LIST, config, *OPENSSL) as proc,
        ):
            online = probe.wait_for(lambda m: m.payload == b"online", 60)
            assert online is not None, "the agent never came online"
            assert probe.wait_for(lambda m: m.topic == topics.events, 30) is not None
            broker.kill()  # the agent's socket now resets under its reads and writes
            time.sleep(2.5)  # stats every 0.2 s: several sends and reconnects fail meanwhile
            broker.start()
            back = probe.wait_for(lambda m: m.payload == b"online", 30)
            assert back is not None, "the agent did not reconnect"
            assert probe.wait_for(lambda m: m.topic == topics.events, 30) is not None
            out, err = _stop(proc)
    finally:
        broker.kill()
    assert "Traceback" not in err, err[-3000:]
    assert "cannot connect to" in err  # a reconnect was refused while the broker was down
    found = _lines(out)
    assert found["LOADED"] == "", out
    assert found["PAHO_SSL_IS_REAL"] == "False", out
    assert found["LIBCRYPTO"] == "False", out


def test_tls_agent_imports_the_real_ssl(kit: FloodKit, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = Broker(tmp_path / "broker", tls=pki, persistence=False)
    broker.start()
    topics = Topics.for_device("iotids", "gw")
    config = _config(tmp_path, kit, broker, f'[mqtt.tls]\nca_file = "{pki.ca_cert}"\n')
    try:
        with (
            Probe(broker, [topics.status]) as probe,
            agent_run.running(RUN_AND_LIST, config, *OPENSSL) as proc,
        ):
            assert probe.wait_for(lambda m: m.payload == b"online", 60) is not None
            out, err = _stop(proc)
    finally:
        broker.kill()
    assert "Traceback" not in err, err[-3000:]
    found = _lines(out)
    assert {"ssl", "_ssl"} <= set(found["LOADED"].split(",")), out
    assert found["PAHO_SSL_IS_REAL"] == "True", out
