"""An in-process MQTT broker for ``iotids demo`` when no ``--broker`` is given.

amqtt is an optional dependency (the ``[demo]`` extra): it is imported only when a broker
starts, so the rest of the desktop tools never need it. The broker runs its own asyncio loop in
one named thread and listens on a free loopback port, anonymous only: it is for one machine's
demo, never for a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from types import TracebackType
from typing import Any, Final

logger = logging.getLogger(__name__)

INSTALL_DEMO: Final = "pip install 'iotids[demo]'"
HOST: Final = "127.0.0.1"
# Another process may take the free port between our probe and amqtt's bind: try a few.
_START_ATTEMPTS: Final = 5


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker cannot start (amqtt missing, no port, or it failed to listen)."""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _broker_class() -> Any:
    """amqtt's Broker, or an error naming the install line that provides it."""
    try:
        from amqtt.broker import Broker
    except ModuleNotFoundError as exc:
        raise EmbeddedBrokerError(
            f"the embedded MQTT broker needs amqtt, which this install lacks. Fix: {INSTALL_DEMO}"
        ) from exc
    # amqtt and its state machine log every connection and transition at INFO, which would
    # drown the demo's progress lines; a level someone set explicitly is left alone.
    for name in ("amqtt", "transitions"):
        noisy = logging.getLogger(name)
        if noisy.level == logging.NOTSET:
            noisy.setLevel(logging.WARNING)
    return Broker


def _config(host: str, port: int) -> dict[str, Any]:
    """amqtt's configuration: one anonymous TCP listener on ``host:port``."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


def _port_taken(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it: amqtt wraps it) is "address already in use"."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


class _Server:
    """One broker thread: owns its event loop from creation to close."""

    def __init__(self, broker_class: Any, config: dict[str, Any]) -> None:
        self.broker_class = broker_class
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.broker: Any = None
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="embedded-broker", daemon=True)

    def _serve(self) -> None:
        """Thread body: start the broker, serve until stopped, then close the loop."""
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._build())
        except Exception as exc:  # handed to EmbeddedBroker.start(), which raises it
            self.failure = exc
        self.ready.set()
        try:
            if self.failure is None:
                self.loop.run_forever()
        finally:
            self._close_loop()

    async def _build(self) -> None:
        """Construct and start the broker inside its running loop."""
        # amqtt's parts make futures on whatever loop is current and create a loop of their
        # own when none runs: built outside a running loop, shutdown() waits on a future that
        # no loop ever completes (verified with amqtt 0.12.1).
        self.broker = self.broker_class(self.config)
        await self.broker.start()

    def _close_loop(self) -> None:
        """Cancel what the broker left behind and close the loop."""
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def halt(self, timeout: float) -> None:
        """Shut the broker down on its loop, stop the loop and join the thread."""
        if self.broker is not None and not self.loop.is_closed():
            with contextlib.suppress(TimeoutError, RuntimeError):
                future = asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self.loop)
                future.result(timeout)
        with contextlib.suppress(RuntimeError):  # the loop already closed itself
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if self.thread.is_alive():
            logger.warning("embedded broker thread did not stop within %.1f s", timeout)


class EmbeddedBroker:
    """amqtt in its own thread and event loop; ``with EmbeddedBroker() as broker: broker.url``."""

    def __init__(self, host: str = HOST, port: int | None = None) -> None:
        self.host = host
        self.port = port or 0
        self._fixed_port = port is not None
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        """The broker's address for clients, e.g. ``mqtt://127.0.0.1:41234``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._server is not None and self._server.thread.is_alive()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Listen on ``host:port`` (a free port unless one was given) and return once bound."""
        if self.running:
            return
        broker_class = _broker_class()
        attempts = 1 if self._fixed_port else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self.port if self._fixed_port else free_port(self.host)
            server = _Server(broker_class, _config(self.host, port))
            server.thread.start()
            if not server.ready.wait(timeout):
                server.halt(timeout)
                raise EmbeddedBrokerError(f"embedded broker did not start within {timeout} s")
            if server.failure is None:
                self._server, self.port = server, port
                logger.info("embedded MQTT broker listening on %s", self.url)
                return
            server.thread.join(timeout)
            if not _port_taken(server.failure) or attempt == attempts:
                raise EmbeddedBrokerError(
                    f"embedded broker cannot listen on {self.host}:{port}: {server.failure}"
                ) from server.failure
            logger.debug("port %d was taken before the broker bound it; retrying", port)

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the broker down and join its thread; a no-op when it is not running."""
        if self._server is None:
            return
        self._server.halt(timeout)
        self._server = None
        logger.info("embedded MQTT broker on port %d stopped", self.port)
