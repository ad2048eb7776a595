"""Broker addresses as operators write them: ``mqtt://host:1883`` or ``mqtts://host:8883``.

Shared by ``iotids monitor``, the demo and provisioning. Credentials never ride in the URL
(they would land in shell history, process lists and logs): a URL with a user part is refused
with a pointer to ``IOTIDS_MQTT_USERNAME`` / ``IOTIDS_MQTT_PASSWORD``.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Final

USERNAME_ENV: Final = "IOTIDS_MQTT_USERNAME"
PASSWORD_ENV: Final = "IOTIDS_MQTT_PASSWORD"  # noqa: S105 - a variable name, not a secret
DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
# A host name's label: letters (any script, for IDNs), digits, '-' and '_' (seen in LAN names).
_LABEL = re.compile(r"\w([\w-]{0,61}\w)?")


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; the message says what to write instead."""


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed broker address: scheme (``mqtt`` or ``mqtts``), host and port."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        """True for ``mqtts://``: the connection must use TLS."""
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://host[:port]`` / ``mqtts://host[:port]``; the port defaults per scheme."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.hostname  # noqa: B018 - parses the netloc: an unclosed "[::1" raises here
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL {url[:80]!r}: {exc}") from None
    scheme = parts.scheme.lower()
    # Checked first, so no later message echoes a password back to a terminal or a log.
    if parts.username is not None or parts.password is not None:
        raise BrokerUrlError(
            f"broker URL for {parts.hostname or '?'}: credentials do not belong in the URL;"
            f" set {USERNAME_ENV} and {PASSWORD_ENV} instead"
        )
    # urlsplit silently drops tabs and newlines: "broker\n.lan" would become another host.
    if any(c.isspace() or not c.isprintable() for c in url.strip()):
        raise BrokerUrlError(f"broker URL {url!r}: must not contain spaces or control characters")
    if scheme not in DEFAULT_PORTS:
        raise BrokerUrlError(f"broker URL {url!r}: must start with mqtt:// or mqtts://")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(f"broker URL {url!r}: only scheme://host:port is allowed")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r}: the host is missing")
    if not valid_host(parts.hostname):
        raise BrokerUrlError(
            f"broker URL {url!r}: {parts.hostname!r} is not a host name or an IP address"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL {url!r}: the port must be 1-65535") from exc
    if port == 0:
        raise BrokerUrlError(f"broker URL {url!r}: the port must be 1-65535")
    return BrokerUrl(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


def valid_host(host: str) -> bool:
    """An IP address or a DNS name (dot-separated labels, a trailing dot allowed)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
