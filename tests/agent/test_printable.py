"""Strings from the network are shown, never acted on: ``agent.printable``."""

from __future__ import annotations

import pytest

from agent.printable import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("syn_flood", "syn_flood"),
        ("é 日本 ü", "é 日本 ü"),  # printable text of any script passes as it is
        ("a\x1b]52;c;aWQ=\x07b", "a\\x1b]52;c;aWQ=\\x07b"),  # OSC 52: the clipboard
        ("x\x1b[2J\x1b[H", "x\\x1b[2J\\x1b[H"),  # clear the screen
        ("ok\rFAKE", "ok\\x0dFAKE"),
        ("one\ntwo", "one\\x0atwo"),
        ("ab\x08\x08", "ab\\x08\\x08"),
        ("a\x9bb", "a\\x9bb"),  # the 8-bit CSI
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # bidi override
        ("a\u2028b", "a\\u2028b"),  # a line separator
        ("\U000e0041", "\\U000e0041"),  # a tag character
    ],
)
def test_control_and_format_characters_are_shown_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text).isprintable()


def test_a_limit_cuts_with_an_ellipsis_after_escaping() -> None:
    assert printable("abcdef", 4) == "abc…"
    assert printable("abcd", 4) == "abcd"
    assert printable("\x1b" * 10, 6) == "\\x1b\\…"
    assert len(printable("x" * 1_000_000, 64)) == 64
