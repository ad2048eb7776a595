"""Markdown table cells from names the data chose: class labels and capture file names.

A ``|`` in a label or a file name would split a report's row into more cells than its header,
and a control character would act on the terminal that shows the report: both are escaped.
"""

from __future__ import annotations

from agent.printable import printable


def cell(text: object) -> str:
    """``text`` safe in a Markdown table cell."""
    return printable(str(text)).replace("|", "\\|")
