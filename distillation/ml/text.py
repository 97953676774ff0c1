"""Small text helpers shared by teacher post-processing, importers and student tasks."""

from __future__ import annotations

import re

# A sentence may end in punctuation followed by closing quotes or brackets.
_SENTENCE_END = (".", "!", "?", "…")
_CLOSERS = "\"')]}”’"


def first_line(text: str | None) -> str:
    """The text up to its first line break, trimmed: every consumer of teacher texts uses only this."""
    if not text:
        return ""
    return text.strip().split("\n", 1)[0].strip()


def ends_mid_sentence(text: str | None) -> bool:
    """Whether a text stops without closing its last sentence, as text cut at a token limit does."""
    stripped = (text or "").strip().rstrip(_CLOSERS)
    if not stripped:
        return False
    return not stripped.endswith(_SENTENCE_END)


# An uncased WordPiece tokenizer (BERT's, the demo student's) decodes "child's" as "child ' s" and
# "well-known" as "well - known", and writes no capitals.
_SPLIT_APOSTROPHE = re.compile(r"(\w) ' (\w)")
_SPLIT_HYPHEN = re.compile(r"(\w) - (\w)")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")
_LOWER_I = re.compile(r"\bi\b")


def readable_output(text: str) -> str:
    """A student's decoded text with split apostrophes and hyphens joined, and, when it has no capital letter at
    all (an uncased tokenizer), its sentences and the pronoun "I" capitalised; cased text keeps its case."""
    text = _SPLIT_HYPHEN.sub(r"\1-\2", _SPLIT_APOSTROPHE.sub(r"\1'\2", text))
    if text == text.lower():
        text = _LOWER_I.sub("I", _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text))
    return text


def check_model_location(name: str) -> None:
    """A name written as a path must exist: otherwise the hub client answers with a confusing repo-id error."""
    from pathlib import Path

    looks_like_path = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1
    if looks_like_path and not Path(name).expanduser().exists():
        raise FileNotFoundError(f"no model at {name}: give an existing folder, a hub id (owner/name) or 'tiny'")
