"""paho-mqtt without ``ssl``, ``hashlib`` and ``urllib.request`` when no TLS is configured.

paho's client imports the three at module level, and they map OpenSSL's libcrypto and libssl
and bring ``email`` and ``http.client`` along, for what a plain ``mqtt://`` connection never
does: TLS (``ssl``), the websocket handshake (``hashlib``) and proxies from the environment
(``urllib.request``, read only when PySocks is installed). ``agent run`` with no
``[mqtt.tls]`` imports paho while stand-ins sit in ``sys.modules`` for those of the three not yet
imported. Why that is safe:

* the stand-ins are in ``sys.modules`` only while paho imports: any later ``import ssl``
  anywhere in the process gets the real module;
* paho's socket reads and writes name ``ssl.SSLWantReadError`` and ``ssl.SSLWantWriteError`` in
  ``except`` clauses, evaluated whenever any exception passes (a ``BlockingIOError``, a reset).
  While the real ``ssl`` is not loaded no SSL socket can exist, so the stand-in answers with
  classes nothing raises and those exceptions go on to the clauses that handle them; once the
  real ``ssl`` is loaded it answers with the real classes;
* any other name read from a stand-in (``ssl.create_default_context`` if TLS were set on a
  client after all) imports the real module and answers from it: slower, never wrong.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Final

STOOD_IN: Final = ("ssl", "hashlib", "urllib.request")


class _NeverRaisedWantRead(Exception):
    """Stands for ``ssl.SSLWantReadError`` while no SSL socket can exist."""


class _NeverRaisedWantWrite(Exception):
    """Stands for ``ssl.SSLWantWriteError`` while no SSL socket can exist."""


_UNTIL_SSL: Final[dict[str, type[Exception]]] = {
    "SSLWantReadError": _NeverRaisedWantRead,
    "SSLWantWriteError": _NeverRaisedWantWrite,
}


class _StandIn(types.ModuleType):
    """An empty module that answers every name from the real one, imported on first need."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            # the import system probes __path__, __spec__...: a plain module has none to give
            raise AttributeError(name)
        real = sys.modules.get(self.__name__)
        if real is None or real is self:
            if self.__name__ == "ssl" and name in _UNTIL_SSL:
                return _UNTIL_SSL[name]
            if real is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
        return getattr(real, name)


def import_paho_without_tls() -> None:
    """Import paho's client (and the parts the agent uses) with the stand-ins in place.

    Does nothing more than a plain import when paho is already imported.
    """
    placed = {name: _StandIn(name) for name in STOOD_IN if name not in sys.modules}
    sys.modules.update(placed)
    if "urllib.request" in placed:
        import urllib

        # ``import urllib.request`` finds the module in sys.modules and binds the package: paho
        # then reads the package's attribute, which only a real import would have set.
        urllib.request = placed["urllib.request"]
    try:
        import paho.mqtt.client
        import paho.mqtt.enums
        import paho.mqtt.packettypes
        import paho.mqtt.properties
        import paho.mqtt.reasoncodes  # noqa: F401 - imported here for the stand-ins' sake
    finally:
        for name, stand_in in placed.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
