"""Command-line output: a tqdm bar per stage, fed by the same callback that updates job rows, and quiet libraries."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# Libraries whose INFO lines (accelerate's checkpoint notes, hub and HTTP chatter) drown a command's own
# output; settings.LOGGING keeps them at WARNING and `-v 2` shows them again.
LIBRARY_LOGGERS = (
    "absl",  # rouge-score says "Using default tokenizer." through it for every explanation it scores
    "accelerate",
    "datasets",
    "filelock",
    "httpcore",
    "httpx",
    "huggingface_hub",
    "matplotlib",
    "torch",
    "transformers",
    "urllib3",
)


# The libraries' own progress bars ("Loading weights", "Writing model shards", dataset maps) would draw
# beside ours for every checkpoint; they read these when first imported.
LIBRARY_PROGRESS_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


class ExpectedTiedWeightsWarning(logging.Filter):
    """Drops accelerate's warning that it saved tied weights once ("Removed shared tensor ...").

    T5 shares its embeddings with the output layer, so every checkpoint says so; loading the checkpoint ties
    them again (the resume tests check that training continues from it), so the warning tells nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


def quiet_library_output() -> None:
    """Keep the libraries' progress bars off (at process start; a variable set by the user wins)."""
    for name in LIBRARY_PROGRESS_BAR_SWITCHES:
        os.environ.setdefault(name, "1")


def show_library_logs() -> None:
    """Let the libraries' INFO lines and bars through (`-v 2`), before the libraries are imported."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")
    os.environ.setdefault("DATASETS_VERBOSITY", "info")
    for name in LIBRARY_PROGRESS_BAR_SWITCHES:
        os.environ[name] = "0"
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


class StageProgressBar:
    """Shows done/total, rate and ETA for the current stage, one bar per stage.

    A stage that goes on counting the same total (training's "validating" and "saving" between steps) stays
    on the bar and is named beside it, rather than starting a bar of its own each time it comes round.
    """

    def __init__(self, stream: TextIO | None = None, disable: bool = False, unit: str = "it") -> None:
        self.stream = stream or sys.stderr
        self.disable = disable
        self.unit = unit
        self._bar = None
        self._stage: str | None = None
        self._moved = False  # whether the count went up since the bar's stage started

    def __call__(self, done: int, total: int | None, stage: str, message: str = "") -> None:
        from tqdm import tqdm

        if self._starts_a_new_bar(done, total, stage):
            self.close()
            self._stage = stage
            self._moved = False
            self._bar = tqdm(
                total=total,
                initial=done,
                desc=stage or "working",
                unit=self.unit,
                file=self.stream,
                disable=self.disable,
                dynamic_ncols=True,
                mininterval=0.2 if self.stream.isatty() else 5.0,  # a log file gets a line now and then
            )
            if message:
                self._bar.set_postfix_str(message, refresh=False)
            return  # tqdm drew it as it opened
        renamed = stage != self._stage and not self._moved
        if renamed:
            self._stage = stage  # the bar's first stage was a preamble (tokenising, resuming): name it after this one
            self._bar.set_description_str(stage or "working", refresh=False)
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.set_postfix_str(message or (stage if stage != self._stage else ""), refresh=False)
        if done > self._bar.n:
            self._moved = True
            self._bar.update(done - self._bar.n)  # draws at most every mininterval; close() draws the end
        elif renamed:
            self._bar.refresh()

    def _starts_a_new_bar(self, done: int, total: int | None, stage: str) -> bool:
        if self._bar is None:
            return True
        if stage == self._stage:
            return False
        same_count = total is not None and total == self._bar.total and done >= self._bar.n
        return not same_count

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> StageProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
