"""Plain records from data files: the one JSON-lines reader (plain or gzipped) and the question record.

Every question and teacher-output file goes through :func:`read_json_lines`: gzip is told by its magic
bytes, not its name, and a bad line is a :class:`DataFileError` that says ``file:line``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from evalsite.errors import DataFileError

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class QuestionRecord:
    """A multiple-choice question: what importers read and what teacher generation prompts with."""

    source_id: str
    question: str
    choices: tuple[str, ...]
    answer: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def answer_index(self) -> int:
        return self.choices.index(self.answer)


def open_text(path: Path | str) -> TextIO:
    """Open plain or gzipped text by its magic bytes, not its name."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_json_lines(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    try:
        handle = open_text(path)
    except OSError as exc:
        raise DataFileError(path, 0, f"cannot open: {exc.strerror or exc}") from exc
    number = 0
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFileError(path, number, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
                if not isinstance(obj, dict):
                    raise DataFileError(path, number, "expected a JSON object")
                yield number, obj
        except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
            raise DataFileError(path, number, f"unreadable: {exc}") from exc
