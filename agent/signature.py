"""Ed25519 checks of a bundle's signature: in this process, or in a short-lived child.

``cryptography`` costs the long-running agent about 6 MB resident for the few signature
checks it makes (at start and at a model push). ``ChildVerifier`` runs them in
``python -m agent.signature_child``: the request goes over stdin, the answer comes back as one JSON
line, and the child exits, so the agent process never imports ``cryptography``. Anything but a
well-formed answer (a crash, a timeout, a non-zero exit, garbage) is a refusal, never trust.
Commands that run once and exit (``iotids verify``, ``validate-config``) check in process.

A check is pure, so the child's answers are remembered by the SHA-256 of the exact request
(keys, signature, manifest): start-up reads the configured bundle more than once and needs one
child for it, and ``agent.preverify`` can ask before the heavy imports.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.bundle_archive import MAX_MANIFEST_BYTES, BundleError
from agent.digest import sha256_hex
from agent.signature_child import MAX_KEYS, verify_here

__all__ = ["ChildVerifier", "Verifier", "verify_here"]

# (raw 32-byte keys, 64-byte signature, manifest bytes) -> index of the key that signed, or None
Verifier = Callable[[Sequence[bytes], bytes, bytes], "int | None"]
MAX_ANSWER_BYTES = 64
CHILD_TIMEOUT = 60.0  # a Pi Zero 2 W under load starts Python and cryptography in a few seconds
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def _request(keys: Sequence[bytes], signature: bytes, message: bytes) -> bytes:
    body = {
        "keys": [key.hex() for key in keys],
        "signature": signature.hex(),
        "message": base64.b64encode(message).decode("ascii"),
    }
    return json.dumps(body).encode("ascii")


def _answer(stdout: bytes, keys: int) -> int | None:
    """The key index a child printed; BundleError for anything else."""
    try:
        found = json.loads(stdout[: MAX_ANSWER_BYTES + 1])["key"]
    except (ValueError, TypeError, KeyError):
        raise BundleError("bundle signature: verifier gave no answer") from None
    if found is None or (type(found) is int and 0 <= found < keys):
        return found
    raise BundleError("bundle signature: verifier gave no answer")


class ChildVerifier:
    """Checks signatures in a child process; remembers answers by the exact request's digest."""

    def __init__(self, timeout: float = CHILD_TIMEOUT, remember: int = 64) -> None:
        self.timeout = timeout
        self.remember = remember
        self.children = 0  # started so far: what tests and the memory benchmark read
        self._known: OrderedDict[str, int | None] = OrderedDict()

    def __call__(self, keys: Sequence[bytes], signature: bytes, message: bytes) -> int | None:
        request = _request(keys, signature, message)
        asked = sha256_hex(request)
        if asked in self._known:
            self._known.move_to_end(asked)
            return self._known[asked]
        found = self._ask_child(request, len(keys), len(message))
        self._known[asked] = found
        while len(self._known) > self.remember:
            self._known.popitem(last=False)
        return found

    def _ask_child(self, request: bytes, keys: int, message: int) -> int | None:
        if keys > MAX_KEYS or message > MAX_MANIFEST_BYTES:
            raise BundleError("bundle signature: too many keys or too long a manifest to check")
        env = dict(os.environ)  # the child imports this very package, wherever it came from
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
        self.children += 1
        try:
            done = subprocess.run(
                [sys.executable, "-m", "agent.signature_child"],
                input=request,
                capture_output=True,
                timeout=self.timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BundleError(
                f"bundle signature: verifier timed out ({self.timeout:g} s)"
            ) from None
        except OSError as exc:
            raise BundleError(f"bundle signature: verifier did not start ({exc})") from None
        if done.returncode != 0:
            raise BundleError(f"bundle signature: verifier failed (exit {done.returncode})")
        return _answer(done.stdout, keys)
