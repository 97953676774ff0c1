"""Which submissions pass review: flags from what the annotator did, and the verdict they lead to. No Django."""

from __future__ import annotations

from dataclasses import dataclass

# Grounds for rejection that a worker can see for themselves: a failed instructed-response check, unfinished work.
FAILING_FLAGS = ("attention_failed", "incomplete")
# Grounds for a closer look, not for rejecting automatically: platforms ask for clear, stated criteria.
SUSPECT_FLAGS = ("too_fast", "straight_lining", "unknown_worker")
# Never approved, rejected or bonused automatically: a person decides (one payment per person per study).
HOLD_FLAGS = ("duplicate_worker", "return_requested")
# Flags that record what a person or the platform did, kept when a sync recomputes the others.
KEPT_FLAGS = ("return_requested",)


@dataclass(frozen=True)
class AnnotatorFacts:
    found: bool
    duplicate: bool = False
    finished: bool = False
    attention_failures: int = 0
    too_fast: bool = False
    straight_lining: bool = False


def submission_flags(facts: AnnotatorFacts) -> dict[str, bool]:
    if facts.duplicate:
        # A second assignment of a worker whose work is on another one: it holds nothing of its own.
        return {"duplicate_worker": True}
    if not facts.found:
        return {"unknown_worker": True, "incomplete": True}
    flags = {
        "attention_failed": facts.attention_failures > 0,
        "incomplete": not facts.finished,
        "too_fast": facts.too_fast,
        "straight_lining": facts.straight_lining,
    }
    return {name: True for name, value in flags.items() if value}


def verdict(flags: dict[str, bool]) -> str:
    """'check' when a hold flag is set; else 'reject' when a failing flag is, 'check' when only suspect ones
    are, else 'approve'."""
    if any(flags.get(name) for name in HOLD_FLAGS):
        return "check"
    if any(flags.get(name) for name in FAILING_FLAGS):
        return "reject"
    if any(flags.get(name) for name in SUSPECT_FLAGS):
        return "check"
    return "approve"
