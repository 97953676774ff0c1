"""CSV cells that a spreadsheet will not run as formulas (OWASP's CSV-injection rule); no Django.

A text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, so
Excel, LibreOffice and Google Sheets show it as text. Numbers stay numbers: numeric columns are left alone,
and so is text that is a plain number (`-3`, `+0.5`, `1e-3`), which no spreadsheet reads as a formula.
Parquet and JSON lines keep the values as they are: they are data formats, not spreadsheets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """The value, with a leading `'` when it is text a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: Iterable[Any]) -> list[Any]:
    """A csv.writer row with every cell made safe."""
    return [safe_cell(value) for value in row]


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and column names are safe; numeric, boolean and date columns unchanged."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        if pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
            out[column] = series.map(safe_cell, na_action="ignore")
    out.columns = [safe_cell(name) if isinstance(name, str) else name for name in out.columns]
    return out
