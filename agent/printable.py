"""Strings from the network made safe to show on a terminal or in a log line, in one place.

Event labels, device ids, bundle ids, status payloads, a pushed bundle's claimed key: whoever may
publish on the broker chooses them. Written raw, a control character acts instead of showing:
ESC starts sequences that move the cursor, clear the screen, set the window title or write the
operator's clipboard (OSC 52); CR and newline rewrite a line or forge one in a log (journald
takes each line as an entry); backspace and bidi overrides (U+202E) change what a line seems
to say. Every character ``str.isprintable`` refuses is shown as its escape (``\\x1b``,
``\\u202e``), as ``repr`` does, so the operator still sees that it was there.
"""

from __future__ import annotations

from typing import Final

ELLIPSIS: Final = "…"


def _shown(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with its control and format characters escaped; with ``limit``, at most that
    many characters (cut with ``…``), so one hostile field cannot push the rest off a screen."""
    if limit is None:
        return text if text.isprintable() else "".join(map(_shown, text))
    # cut before escaping: bounds the work on a huge string
    shown = text[: limit + 1]
    if not shown.isprintable():
        shown = "".join(map(_shown, shown))
    return shown if len(shown) <= limit else shown[: max(limit - 1, 0)] + ELLIPSIS
