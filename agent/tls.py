"""TLS pieces shared by the MQTT sink and the monitor."""

from __future__ import annotations

import ssl


class ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho drops such a socket without closing it."""

    def do_handshake(self, block: bool = False) -> None:
        """Handshake; on any failure release the file descriptor before re-raising."""
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise
