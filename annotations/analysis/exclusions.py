"""Pre-registered exclusion rules (attention checks, speeding, straight-lining) applied per annotator."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .io import ANNOTATOR, VALUE


@dataclass(frozen=True)
class ExclusionRules:
    """Rules fixed before looking at the outcomes; a rule whose column is None is off.

    - `attention_column`: truthy on any row means the annotator failed an attention check.
    - `seconds_column` / `min_seconds`: the annotator's median time per row is below `min_seconds`
      (the median, so one slow page does not hide a hurried session; a per-session total repeated on
      every row works too).
    - `straightlining`: the annotator gave one and the same value on every rating, judged only when they
      made at least `straightlining_min_ratings` ratings (one rating is trivially "constant").
    """

    attention_column: str | None = None
    seconds_column: str | None = None
    min_seconds: float | None = None
    straightlining: bool = True
    straightlining_min_ratings: int = 5


@dataclass
class ExclusionSummary:
    """Counts of excluded annotators and ratings per rule; an annotator may break several rules."""

    rules: dict[str, object]
    annotators_by_rule: dict[str, list[str]] = field(default_factory=dict)
    n_ratings_before: int = 0
    n_ratings_after: int = 0
    n_annotators_before: int = 0
    n_annotators_after: int = 0

    @property
    def n_excluded(self) -> int:
        """Ratings removed."""
        return self.n_ratings_before - self.n_ratings_after

    def to_dict(self) -> dict[str, object]:
        return {
            "rules": self.rules,
            "n_ratings_before": self.n_ratings_before,
            "n_ratings_after": self.n_ratings_after,
            "n_ratings_excluded": self.n_excluded,
            "n_annotators_before": self.n_annotators_before,
            "n_annotators_after": self.n_annotators_after,
            "n_annotators_excluded": self.n_annotators_before - self.n_annotators_after,
            "by_rule": {
                rule: {"n_annotators": len(ids), "annotators": ids} for rule, ids in self.annotators_by_rule.items()
            },
        }


def _failed_attention(tidy: pd.DataFrame, column: str) -> set:
    flags = tidy[column].fillna(False).astype(bool)
    return set(tidy.loc[flags, ANNOTATOR])


def _too_fast(tidy: pd.DataFrame, column: str, min_seconds: float) -> set:
    medians = tidy.groupby(ANNOTATOR, observed=True)[column].median()
    return set(medians.index[medians < min_seconds])


def _straightliners(tidy: pd.DataFrame, min_ratings: int) -> set:
    per_annotator = tidy.groupby(ANNOTATOR, observed=True)[VALUE].agg(["nunique", "size"])
    flagged = (per_annotator["nunique"] == 1) & (per_annotator["size"] >= min_ratings)
    return set(per_annotator.index[flagged])


def apply_exclusions(tidy: pd.DataFrame, rules: ExclusionRules) -> tuple[pd.DataFrame, ExclusionSummary]:
    """Drop every rating of annotators who break a rule; return the kept rows and the counts."""
    flagged: dict[str, set] = {}
    if rules.attention_column:
        flagged["attention_check"] = _failed_attention(tidy, rules.attention_column)
    if rules.seconds_column and rules.min_seconds is not None:
        flagged["too_fast"] = _too_fast(tidy, rules.seconds_column, rules.min_seconds)
    if rules.straightlining:
        flagged["straightlining"] = _straightliners(tidy, rules.straightlining_min_ratings)
    excluded = set().union(*flagged.values()) if flagged else set()
    kept = tidy[~tidy[ANNOTATOR].isin(excluded)].reset_index(drop=True)
    summary = ExclusionSummary(
        rules={
            "attention_column": rules.attention_column,
            "seconds_column": rules.seconds_column,
            "min_seconds": rules.min_seconds,
            "straightlining": rules.straightlining,
            "straightlining_min_ratings": rules.straightlining_min_ratings,
        },
        annotators_by_rule={rule: sorted(map(str, ids)) for rule, ids in flagged.items()},
        n_ratings_before=len(tidy),
        n_ratings_after=len(kept),
        n_annotators_before=tidy[ANNOTATOR].nunique(),
        n_annotators_after=kept[ANNOTATOR].nunique(),
    )
    return kept, summary
