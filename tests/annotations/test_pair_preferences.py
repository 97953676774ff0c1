"""Pair mode's preference: autosaved like a rating, in the tidy exports, on the dashboard and in the report."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from annotations.models import Annotator, Assignment
from annotations.selectors import study_pairs_frame
from tests.annotations.factories import build_study
from tests.annotations.test_sessions import current, screen_form, start_rating

pytestmark = pytest.mark.django_db
CONDITIONS = ("MT+CF:Unrevised", "MT+CF:Revised", "MT:Unrevised")


def _pair_study(slug: str = "pairs"):
    return build_study(slug=slug, mode="pair", conditions=CONDITIONS, n_items=6, per_annotator=3)


def _left_right(assignment: Assignment) -> tuple[int, int]:
    first, second = assignment.explanation_id, assignment.second_explanation_id
    return (second, first) if assignment.left_right_swapped else (first, second)


def test_preference_is_autosaved_and_survives_a_reload(client):
    study = _pair_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    left, right = _left_right(assignment)
    answer_url = url + "answer/"

    assert client.post(answer_url, {"assignment": assignment.pk, "preference": right}).status_code == 200
    assignment.refresh_from_db()
    assert assignment.preferred_explanation_id == right and not assignment.no_preference
    page = client.get(url).content.decode()
    assert re.search(rf'name="preference" value="{right}" required checked', page)
    assert not re.search(rf'name="preference" value="{left}" required checked', page)

    assert client.post(answer_url, {"assignment": assignment.pk, "preference": "none"}).status_code == 200
    assignment.refresh_from_db()
    assert assignment.no_preference and assignment.preferred_explanation_id is None
    assert 'value="none" required checked' in client.get(url).content.decode()

    other = Assignment.objects.exclude(pk=assignment.pk).filter(annotator=annotator).first()
    foreign = client.post(answer_url, {"assignment": assignment.pk, "preference": other.explanation_id})
    assert foreign.status_code == 403
    assert client.post(answer_url, {"assignment": assignment.pk, "preference": "left"}).status_code == 400
    assignment.refresh_from_db()
    assert assignment.no_preference  # a refused answer changes nothing


def test_preference_autosave_is_refused_on_a_single_explanation_screen(client):
    study = build_study(slug="single", per_annotator=4)
    url = start_rating(client, study)
    client.get(url)
    assignment = current(Annotator.objects.get())
    response = client.post(url + "answer/", {"assignment": assignment.pk, "preference": assignment.explanation_id})
    assert response.status_code == 400


def _finish_with_preferences(client, study, label: str, choose) -> None:
    url = start_rating(client, study, label)
    client.get(url)  # the first screen allocates the session's pairs
    annotator = Annotator.objects.get(external_id=label)
    assert annotator.assignments.count() == 3
    while (assignment := current(annotator)) is not None:
        client.get(url)
        form = screen_form(annotator, assignment)
        form["preference"] = choose(assignment)
        assert client.post(url, form).status_code == 302
    client.get(url)


def test_exports_dashboard_and_report_show_the_preferences(client, admin_client, tmp_path):
    study = _pair_study("pairs-report")
    revised = study.conditions.get(label="MT+CF:Revised")

    def prefer_revised(assignment: Assignment):
        for explanation in (assignment.explanation, assignment.second_explanation):
            if explanation.condition_id == revised.pk:
                return explanation.pk
        return "none"

    def prefer_left(assignment: Assignment):
        return _left_right(assignment)[0]

    for index in range(6):
        _finish_with_preferences(client, study, f"ann-{index}", prefer_revised if index % 2 == 0 else prefer_left)

    out = io.StringIO()
    call_command("export_ratings", "--study", study.slug, "--format", "csv", stdout=out)
    frame = pd.read_csv(io.StringIO(out.getvalue()), keep_default_na=False)
    assert set(frame["side"]) == {"left", "right"} and set(frame["preference"]) <= {"this", "other", "tie"}
    for assignment in Assignment.objects.filter(annotator__study=study, kind="pair"):
        left, right = _left_right(assignment)
        rows = frame[(frame["annotator_id"] == assignment.annotator_id)]
        assert set(rows.loc[rows["explanation_id"] == left, "side"]) == {"left"}
        assert set(rows.loc[rows["explanation_id"] == right, "side"]) == {"right"}
        if assignment.preferred_explanation_id:
            chosen = rows[rows["explanation_id"] == assignment.preferred_explanation_id]
            assert set(chosen["preference"]) == {"this"}

    pairs = study_pairs_frame(study)
    assert len(pairs) == 6 * 3
    assert (pairs["outcome"] == "a").sum() >= 9  # every second annotator always prefers the left one

    dashboard = admin_client.get(reverse("annotations:dashboard", args=[study.slug])).content.decode()
    assert "Preferences (pair screens)" in dashboard

    call_command(
        "analyze_ratings",
        "--study",
        study.slug,
        "--out",
        str(tmp_path),
        "--n-boot",
        "50",
        "--models",
        "lmm",
        "--quiet",
        "--no-exclusions",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )  # fmt: skip  (every simulated answer is a 4: the straight-lining rule would exclude them all)
    report = json.loads((tmp_path / "report.json").read_text())
    section = report["preferences"]
    assert section["n_judgements"] == len(pairs)
    worths = {row["condition"]: row["worth"] for row in section["worths"]}
    assert max(worths, key=worths.get) == "MT+CF:Revised"
    assert (tmp_path / "preferences.png").exists()
    assert "Bradley-Terry" in (tmp_path / "report.html").read_text()
    tidy = pd.read_csv(tmp_path / "ratings_tidy.csv", keep_default_na=False)
    assert {"side", "preference"} <= set(tidy.columns)
