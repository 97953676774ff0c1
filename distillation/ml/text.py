"""Small text helpers shared by teacher post-processing, importers and student tasks."""

from __future__ import annotations

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


def check_model_location(name: str) -> None:
    """A name written as a path must exist: otherwise the hub client answers with a confusing repo-id error."""
    from pathlib import Path

    looks_like_path = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1
    if looks_like_path and not Path(name).expanduser().exists():
        raise FileNotFoundError(f"no model at {name}: give an existing folder, a hub id (owner/name) or 'tiny'")
