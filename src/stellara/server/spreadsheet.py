"""CSV downloads of the admin API (`/admin/usage`, experiment reports), safe to open in a
spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

# Spreadsheets run a cell starting with these as a formula; some values come from clients
# (session ids, user names).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_lines(rows: Iterable[Iterable[Any]]) -> bytes:
    """`rows` as CSV lines (None: an empty cell); a text cell a spreadsheet would run as a
    formula is quoted with a leading `'`."""
    out = io.StringIO()
    csv.writer(out).writerows([_cell(value) for value in row] for row in rows)
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
