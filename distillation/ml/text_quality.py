"""Text-quality measures of a set of explanations: empty, degenerate, in-vocabulary, distinct, grounded, length.

They tell readable explanations from noise before anyone is asked to rate them:

- *non-empty*: the explanation has a word character;
- *degenerate*: a character repeated 6 or more times in a row (``abbbbbb``) or a word repeated 4 or more
  times in a row (``the the the the``);
- *corpus words*: the share of word tokens (over all explanations) that occur in the training corpus;
- *distinct*: the share of explanations whose text (lower-cased, whitespace collapsed) no other one has, so the
  same sentence for every question scores low;
- *grounded*: the share that uses a content word (four letters or more, not a stop word, a plural's "s" dropped)
  of its own question or choices;
- *mean length* in characters, and exact-match accuracy of the answers beside the chance level (one over the
  number of choices).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WORD_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)?")
REPEATED_CHARACTER = re.compile(r"(.)\1{5,}", re.DOTALL)
REPEATED_WORD_RUN = 4
CONTENT_WORD_MIN_LETTERS = 4

# Common English function words of four letters or more (shorter ones are excluded by their length), and the
# words every explanation of a multiple-choice question may use (answer, choice, question, option).
STOP_WORDS = frozenset(
    {
        "about",
        "above",
        "after",
        "again",
        "against",
        "also",
        "although",
        "among",
        "another",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "every",
        "from",
        "further",
        "have",
        "having",
        "here",
        "hers",
        "herself",
        "himself",
        "into",
        "itself",
        "just",
        "like",
        "many",
        "more",
        "most",
        "much",
        "must",
        "neither",
        "never",
        "once",
        "only",
        "other",
        "ours",
        "ourselves",
        "over",
        "same",
        "shall",
        "should",
        "since",
        "some",
        "such",
        "than",
        "that",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "thus",
        "under",
        "until",
        "upon",
        "very",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "whom",
        "whose",
        "will",
        "with",
        "within",
        "without",
        "would",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "answer",
        "answers",
        "choice",
        "choices",
        "correct",
        "option",
        "options",
        "question",
    }
)


@dataclass(frozen=True)
class ExplainedQuestion:
    """One explanation with the question it explains; ``is_correct`` is None when the answer is not known."""

    explanation: str
    question: str
    choices: Sequence[str]
    is_correct: bool | None = None


@dataclass(frozen=True)
class TextQuality:
    """Shares are fractions in [0, 1]; ``corpus_words`` is None without a vocabulary, ``accuracy`` without answers."""

    n: int
    non_empty: float
    degenerate: float
    corpus_words: float | None
    distinct: float
    grounded: float
    mean_length: float
    accuracy: float | None
    chance: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def words(text: str) -> list[str]:
    return WORD_PATTERN.findall(text.lower())


def is_empty(text: str) -> bool:
    return not any(character.isalnum() for character in text)


def is_degenerate(text: str) -> bool:
    if REPEATED_CHARACTER.search(text):
        return True
    run, previous = 0, None
    for word in text.lower().split():
        run = run + 1 if word == previous else 1
        previous = word
        if run >= REPEATED_WORD_RUN:
            return True
    return False


def content_words(text: str) -> set[str]:
    """Content words, a possessive's "'s" and a final "s" dropped, so that "store" in a question matches "stores"
    in its explanation, and "farmer" matches "farmer's"."""
    bare = (w.removesuffix("'s").removesuffix("'") for w in words(text))
    return {w.removesuffix("s") for w in bare if len(w) >= CONTENT_WORD_MIN_LETTERS and w not in STOP_WORDS}


def is_grounded(explanation: str, question: str, choices: Iterable[str]) -> bool:
    source = content_words(" ".join([question, *choices]))
    return bool(content_words(explanation) & source)


def vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Every word of the texts: what "corpus words" are measured against."""
    found: set[str] = set()
    for text in texts:
        found.update(words(text))
    return frozenset(found)


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def text_quality(items: Sequence[ExplainedQuestion], corpus_vocabulary: frozenset[str] | None = None) -> TextQuality:
    """The measures over ``items``; every share is 0 for an empty list."""
    n = len(items)
    if n == 0:
        return TextQuality(0, 0.0, 0.0, None, 0.0, 0.0, 0.0, None, None)
    texts = [item.explanation.strip() for item in items]
    counts = Counter(_normalised(text) for text in texts if not is_empty(text))
    corpus_share = None
    if corpus_vocabulary is not None:
        tokens = [w for text in texts for w in words(text)]
        corpus_share = sum(w in corpus_vocabulary for w in tokens) / len(tokens) if tokens else 0.0
    scored = [item for item in items if item.is_correct is not None]
    accuracy = sum(bool(item.is_correct) for item in scored) / len(scored) if scored else None
    chance = sum(1 / len(item.choices) for item in scored) / len(scored) if scored else None
    return TextQuality(
        n=n,
        non_empty=sum(not is_empty(text) for text in texts) / n,
        degenerate=sum(is_degenerate(text) for text in texts) / n,
        corpus_words=corpus_share,
        distinct=sum(1 for text in texts if not is_empty(text) and counts[_normalised(text)] == 1) / n,
        grounded=sum(is_grounded(text, item.question, item.choices) for text, item in zip(texts, items, strict=True))
        / n,
        mean_length=sum(len(text) for text in texts) / n,
        accuracy=accuracy,
        chance=chance,
    )


# What a set of explanations needs before it is worth showing to annotators: (measure, at least?, bound). The
# paper's T5-large students reach 100% distinct and 97-99% grounded; the demo's small students aim lower.
READABLE_GOALS: tuple[tuple[str, bool, float], ...] = (
    ("non_empty", True, 0.98),
    ("degenerate", False, 0.05),
    ("corpus_words", True, 0.90),
    ("distinct", True, 0.90),
    ("grounded", True, 0.70),
)


def unmet_goals(quality: TextQuality) -> list[str]:
    """The readable-text goals ``quality`` misses, each said with its figure ("grounded 62% < 70%")."""
    missed = []
    for name, at_least, bound in READABLE_GOALS:
        value = getattr(quality, name)
        if value is None:
            continue  # no corpus vocabulary to judge by
        if (value < bound) if at_least else (value > bound):
            missed.append(f"{name.replace('_', ' ')} {100 * value:.0f}% {'<' if at_least else '>'} {100 * bound:.0f}%")
    return missed
