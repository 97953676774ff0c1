"""Cleaning of teacher completions: echoed prompts, stop sequences, a new example begun, truncation flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distillation.ml.text import ends_mid_sentence

NEW_EXAMPLE_MARKER = "Question:"
# Labels a teacher sometimes repeats before its answer although the prompt already ended with them.
ECHOED_LABELS = ("Explanation:", "Critique:", "Revision:")
# A sentence has ended when its last visible character is terminal punctuation, possibly inside quotes or
# brackets; anything else (a word, a comma) means the text stops mid-sentence.


@dataclass(frozen=True)
class CleanedText:
    text: str
    truncated: bool  # the teacher hit its token limit and nothing after the kept text was cut away
    empty: bool


def cut_at_first(text: str, markers: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest marker, and whether any marker was found."""
    positions = [text.find(marker) for marker in markers if marker]
    positions = [position for position in positions if position >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True


def strip_echo(text: str, prompt: str | None) -> str:
    """Drop a copy of the prompt (some servers echo it) and a repeated answer label at the start."""
    if prompt and text.startswith(prompt):
        text = text[len(prompt) :]
    stripped = text.lstrip()
    for label in ECHOED_LABELS:
        if stripped.startswith(label):
            return stripped[len(label) :]
    return text


def clean_completion(
    raw: str, *, prompt: str | None = None, stop: Sequence[str] = ("\n",), hit_token_limit: bool = False
) -> CleanedText:
    """The first answer in a completion: echo stripped, cut at a stop sequence or a new question, trimmed."""
    text = strip_echo(raw, prompt)
    # Leading whitespace goes first so a completion that opens with a line break is not cut to nothing.
    text = text.lstrip()
    text, cut = cut_at_first(text, [*stop, NEW_EXAMPLE_MARKER])
    text = text.strip()
    return CleanedText(text=text, truncated=hit_token_limit and not cut, empty=not text)


def looks_truncated(text: str) -> bool:
    """Whether a text stops mid-sentence (no terminal punctuation at its end); an empty text does not."""
    return ends_mid_sentence(text)
