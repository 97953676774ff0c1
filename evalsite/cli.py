"""Command-line progress: a tqdm bar per stage, fed by the same callback that updates job rows."""

from __future__ import annotations

import sys
from typing import TextIO


class StageProgressBar:
    """Shows done/total, rate and ETA for the current stage; a new stage starts a new bar."""

    def __init__(self, stream: TextIO | None = None, disable: bool = False, unit: str = "it") -> None:
        self.stream = stream or sys.stderr
        self.disable = disable
        self.unit = unit
        self._bar = None
        self._stage: str | None = None

    def __call__(self, done: int, total: int | None, stage: str, message: str = "") -> None:
        from tqdm import tqdm

        if self._bar is None or stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(
                total=total,
                initial=done,
                desc=stage or "working",
                unit=self.unit,
                file=self.stream,
                disable=self.disable,
                dynamic_ncols=True,
            )
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> StageProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
