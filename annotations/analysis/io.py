"""Loading ratings into the tidy frame every analysis works on, and the per-construct views of it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ANNOTATOR = "annotator_id"
ITEM = "item_id"
EXPLANATION = "explanation_id"
CONDITION = "condition"
CONSTRUCT = "construct"
VALUE = "value"
TIDY_COLUMNS = (ANNOTATOR, ITEM, EXPLANATION, CONDITION, CONSTRUCT, VALUE)

# One explanation text is identified by its id *within* a condition: in the paper's study.csv the
# `rationale_id` names the question, and each condition (student model) wrote its own explanation for it.
# Keying on both is correct whether or not the ids are already unique across conditions.
EXPLANATION_KEYS = [EXPLANATION, CONDITION]
# One judgement: an annotator rating one explanation (on one or more constructs).
JUDGEMENT_KEYS = [ANNOTATOR, ITEM, EXPLANATION, CONDITION]

QUALITY = "Quality"


def load_tidy_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV that already has one row per rating and the tidy columns (plus any covariates)."""
    return validate_tidy(pd.read_csv(path))


def load_wide_csv(
    path: str | Path,
    *,
    annotator: str,
    explanation: str,
    condition: str,
    constructs: Sequence[str],
    item: str | None = None,
) -> pd.DataFrame:
    """Read a CSV with one row per (annotator, explanation) and one column per construct; return tidy rows."""
    wide = pd.read_csv(path)
    return wide_to_tidy(
        wide, annotator=annotator, explanation=explanation, condition=condition, constructs=constructs, item=item
    )


def wide_to_tidy(
    wide: pd.DataFrame,
    *,
    annotator: str,
    explanation: str,
    condition: str,
    constructs: Sequence[str],
    item: str | None = None,
) -> pd.DataFrame:
    """Melt construct columns into rows; other columns are kept as covariates.

    Without an item column the explanation id doubles as the item (the random-effect grouping), as in the
    paper's study where `rationale_id` identifies the question an explanation answers.
    """
    constructs = list(constructs)
    needed = [annotator, explanation, condition, *constructs] + ([item] if item else [])
    missing = [c for c in needed if c not in wide.columns]
    if missing:
        raise ValueError(f"wide CSV lacks columns: {missing}")
    renamed = {annotator: ANNOTATOR, explanation: EXPLANATION, condition: CONDITION}
    frame = wide.copy()
    frame[ITEM] = frame[item] if item else frame[explanation]
    frame = frame.rename(columns=renamed)
    dropped = {item} if item and item not in renamed else set()
    covariates = [c for c in frame.columns if c not in {*constructs, *TIDY_COLUMNS, *dropped}]
    clashes = [c for c in covariates if c in (CONSTRUCT, VALUE)]
    if clashes:
        raise ValueError(f"covariate columns clash with tidy column names: {clashes}")
    tidy = frame.melt(
        id_vars=[ANNOTATOR, ITEM, EXPLANATION, CONDITION, *covariates],
        value_vars=constructs,
        var_name=CONSTRUCT,
        value_name=VALUE,
    )
    tidy = tidy.dropna(subset=[VALUE])
    ordered = [*TIDY_COLUMNS, *covariates]
    return validate_tidy(tidy[ordered].reset_index(drop=True))


def validate_tidy(tidy: pd.DataFrame) -> pd.DataFrame:
    """Check the tidy columns exist and values are numeric; return a copy with a clean index."""
    missing = [c for c in TIDY_COLUMNS if c not in tidy.columns]
    if missing:
        raise ValueError(f"tidy ratings lack columns: {missing}")
    out = tidy.reset_index(drop=True).copy()
    out[VALUE] = pd.to_numeric(out[VALUE], errors="raise").astype(float)
    out[CONDITION] = out[CONDITION].astype(str)
    out[CONSTRUCT] = out[CONSTRUCT].astype(str)
    return out


def covariate_columns(tidy: pd.DataFrame) -> list[str]:
    """Every column that is not one of the tidy columns."""
    return [c for c in tidy.columns if c not in TIDY_COLUMNS]


def constructs_of(tidy: pd.DataFrame) -> list[str]:
    """Constructs in the order they first appear."""
    return list(dict.fromkeys(tidy[CONSTRUCT]))


def conditions_of(tidy: pd.DataFrame, reference: str | None = None) -> list[str]:
    """Conditions sorted, with the reference (if given) first."""
    levels = sorted(tidy[CONDITION].unique())
    if reference is None:
        return levels
    if reference not in levels:
        raise ValueError(f"reference condition {reference!r} not among {levels}")
    return [reference, *[c for c in levels if c != reference]]


def composite_scores(tidy: pd.DataFrame, constructs: Sequence[str], name: str = QUALITY) -> pd.DataFrame:
    """Mean of the constructs per judgement (annotator x explanation), as tidy rows with construct `name`.

    Covariates are constant within a judgement, so their first value is carried along.
    """
    rows = tidy[tidy[CONSTRUCT].isin(list(constructs))]
    covariates = covariate_columns(rows)
    grouped = rows.groupby(JUDGEMENT_KEYS, sort=False, observed=True, dropna=False)
    out = grouped[VALUE].mean().to_frame()
    if covariates:
        out = out.join(grouped[covariates].first())
    out = out.reset_index()
    out[CONSTRUCT] = name
    return out[[*TIDY_COLUMNS, *covariates]]


def construct_frame(tidy: pd.DataFrame, construct: str, constructs: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows for one construct; the composite name yields the mean of `constructs` per judgement."""
    if construct == QUALITY and QUALITY not in set(tidy[CONSTRUCT]):
        return composite_scores(tidy, constructs or constructs_of(tidy), name=QUALITY)
    return tidy[tidy[CONSTRUCT] == construct].reset_index(drop=True)


def is_integer_scale(values: pd.Series | np.ndarray) -> bool:
    """Whether every value is a whole number (an ordinal model needs discrete categories)."""
    array = np.asarray(values, dtype=float)
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))
