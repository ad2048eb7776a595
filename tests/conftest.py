"""Suite-wide fixtures: the shared datasets, real Mosquitto brokers, no silent thread failures."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker

REPO = Path(__file__).resolve().parents[1]


def _datasets_dir() -> Path:
    env = os.environ.get("IOTIDS_DATASETS")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


# The public datasets tests read (folders of ../shared/datasets, each with a PROVENANCE.md).
PUBLIC_DATASETS = (
    "ciciot2023_sample",
    "ddos_pcaps_stopddos",
    "mqttset_reduced_pcap",
    "n_baiot_sample",
    "nsl_kdd",
    "portscan_pcap_ppa",
    "ton_iot_telemetry",
)


def _named_datasets(request: pytest.FixtureRequest) -> list[str]:
    """Which public datasets a test module reads (the folder names its source mentions)."""
    try:
        text = inspect.getsource(request.module)
    except (OSError, TypeError):
        return []
    return [name for name in PUBLIC_DATASETS if name in text]


@pytest.fixture(scope="module")  # module: the reason names what the module reads
def datasets(request: pytest.FixtureRequest) -> Path:
    """../shared/datasets (or $IOTIDS_DATASETS): real public captures and tables, read-only.

    A bare clone has no such folder: the test is skipped with the datasets it needs named. CI
    has the data, so there (``CI`` set) a missing folder fails the test instead of hiding it.
    """
    path = _datasets_dir()
    if not path.is_dir():
        named = ", ".join(_named_datasets(request)) or "the public datasets"
        reason = f"needs {named} from {path} (absent; set IOTIDS_DATASETS)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start real brokers (``broker(tls=..., users=..., acl_file=...)``); all die at teardown."""
    started: list[Broker] = []

    def make(**kwargs: Any) -> Broker:
        instance = Broker(tmp_path / f"broker{len(started)}", **kwargs)
        started.append(instance)
        instance.start()
        return instance

    yield make
    for instance in started:
        instance.kill()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A plain anonymous Mosquitto (no persistence) on a free loopback port; killed afterwards."""
    instance = Broker(tmp_path / "mosquitto", persistence=False)
    instance.start()
    yield instance
    instance.kill()


class _ErrorRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_log_exception(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test in which a thread loop or callback logged an exception (Home Assistant's way).

    Tests that provoke such a log on purpose mark themselves ``@pytest.mark.allow_log_exception``.
    """
    recorder = _ErrorRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield
    finally:
        root.removeHandler(recorder)
    if recorder.records and request.node.get_closest_marker("allow_log_exception") is None:
        first = recorder.records[0]
        pytest.fail(f"an exception was logged: {first.name}: {first.getMessage()}")
