"""TLS pieces shared by the MQTT sink, the MQTT sensor source and the monitor."""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import TlsConfig


class ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho drops such a socket without closing it."""

    def do_handshake(self, block: bool = False) -> None:
        """Handshake; on any failure release the file descriptor before re-raising."""
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _ClientContext(ssl.SSLContext):
    """A client context that can check the certificate against a name other than the host."""

    server_name: str = ""

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap with ``server_name`` (when set) as SNI and the name the certificate must match."""
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client context: the CA file or the system store, optional client cert, hostname checked."""
    ctx = _ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = tls.server_hostname
    # Without this every refused handshake (wrong CA, retried with backoff) leaks a socket.
    ctx.sslsocket_class = ClosingSSLSocket
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.ca_file:
        ctx.load_verify_locations(cafile=tls.ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
