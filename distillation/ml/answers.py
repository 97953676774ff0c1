"""Scoring a student's generated answer: exact match with the label (the headline), and a lenient choice parser.

Exact match is the paper's accuracy: the text after the last "(So) the answer is" must equal the label's
answer text character for character (surrounding spaces and a final full stop aside). ``parse_answer``, which
also accepts a choice letter or the most similar choice, is a diagnostic only: it counts "texas city" as "texas".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

CHOICE_LETTERS = "abcde"
DEFAULT_SIMILARITY_THRESHOLD = 0.6

# The students are trained to write "The answer is X" (multitask) or "... So the answer is X." (counterfactual);
# the answer is whatever follows the last such phrase, so a rationale that quotes the phrase earlier is skipped.
_ANSWER_PHRASE = re.compile(r"(?:so\s+)?the\s+answer\s+is\s*:?", re.IGNORECASE)
_LETTER_ONLY = re.compile(r"^\(?\s*([a-e])\s*[).:]?$", re.IGNORECASE)
_LEADING_LETTER = re.compile(r"^\(\s*([a-e])\s*\)", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


class ParseStatus(StrEnum):
    EXACT = "exact"
    LETTER = "letter"
    SIMILAR = "similar"
    UNPARSEABLE = "unparseable"


@dataclass(frozen=True)
class ParsedAnswer:
    """Which choice an answer names (None when unparseable) and how that was decided."""

    choice_index: int | None
    status: ParseStatus
    answer_text: str
    similarity: float = 0.0

    @property
    def parsed(self) -> bool:
        return self.choice_index is not None


def normalise(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip().casefold()


def answer_text_of(generated: str) -> str:
    """The part of a generated text that names the answer: after the last "(So) the answer is", trimmed."""
    matches = list(_ANSWER_PHRASE.finditer(generated))
    tail = generated[matches[-1].end() :] if matches else generated
    return tail.strip().rstrip(".").strip().strip("\"'").strip()


def rationale_text_of(generated: str) -> str:
    """The part of a counterfactual-style output before its final "So the answer is ...", trimmed."""
    matches = list(_ANSWER_PHRASE.finditer(generated))
    head = generated[: matches[-1].start()] if matches else generated
    return head.strip()


def exact_match(generated: str, label: str) -> bool:
    """Whether a generated answer names exactly the label's answer (both may carry "The answer is")."""
    return answer_text_of(generated) == answer_text_of(label)


def exact_match_accuracy(pairs: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """How many (prediction, label) pairs match exactly, and how many there are."""
    results = [exact_match(prediction, label) for prediction, label in pairs]
    return sum(results), len(results)


def parse_answer(
    generated: str, choices: Sequence[str], *, similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD
) -> ParsedAnswer:
    """Map a generated answer to a choice: exact text, else a letter, else the most similar choice, else none.

    Exact and letter matches win over similarity so that a choice such as "bank" is never confused with "banks"
    when the student wrote one of them exactly. Duplicate choices (CommonsenseQA has a few) resolve to the first.
    """
    answer = answer_text_of(generated)
    wanted = normalise(answer)
    normalised_choices = [normalise(choice) for choice in choices]
    if wanted in normalised_choices:
        return ParsedAnswer(normalised_choices.index(wanted), ParseStatus.EXACT, answer, 1.0)

    letter = _choice_letter(answer, len(choices))
    if letter is not None:
        return ParsedAnswer(letter, ParseStatus.LETTER, answer, 1.0)

    best_index, best_similarity = _most_similar(wanted, normalised_choices)
    if best_index is not None and best_similarity >= similarity_threshold:
        return ParsedAnswer(best_index, ParseStatus.SIMILAR, answer, best_similarity)
    return ParsedAnswer(None, ParseStatus.UNPARSEABLE, answer, best_similarity)


def _choice_letter(answer: str, n_choices: int) -> int | None:
    match = _LETTER_ONLY.match(answer.strip()) or _LEADING_LETTER.match(answer.strip())
    if match is None:
        return None
    index = CHOICE_LETTERS.index(match.group(1).lower())
    return index if index < n_choices else None


def _most_similar(wanted: str, normalised_choices: Sequence[str]) -> tuple[int | None, float]:
    if not wanted:
        return None, 0.0
    scores = [difflib.SequenceMatcher(None, wanted, choice).ratio() for choice in normalised_choices]
    if not scores:
        return None, 0.0
    best = max(range(len(scores)), key=scores.__getitem__)
    return best, scores[best]
