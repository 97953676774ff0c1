"""Errors that both apps raise and catch; plain Python, so the Django-free cores can use them too."""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A line of a data file that cannot be used; the message names the file and line."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")
