"""Query budgets of the annotator pages' hot paths, and a first screen that costs the same in a study of any size.

Counted through the real views with Django's CaptureQueriesContext. Inside a test every `atomic` block is a
savepoint of the test's own transaction; in production it is the transaction itself, whose BEGIN and COMMIT
the driver sends without Django logging them as statements. So savepoint statements are left out of the
counts: what remains is what a request sends in production. The caches that hold a study's constructs and
conditions are emptied and the annotator's last-seen time is backdated before each measured request, so the
counts are those of the worst case (cold cache, activity to record).
"""

from __future__ import annotations

import csv
import statistics
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotations.models import Annotator, Assignment, Explanation, Rating
from annotations.services.studies import explanations_import_csv, study_create, study_open
from tests.annotations.factories import CHOICES, build_study
from tests.annotations.test_sessions import current, screen_form, start_rating

pytestmark = pytest.mark.django_db

FIRST_SCREEN_BUDGET = 15
SCREEN_GET_BUDGET = 8
SCREEN_POST_BUDGET = 10
ANSWER_BUDGET = 4
CONDITIONS = ("CF:Unrevised", "MT:Unrevised", "MT+CF:Unrevised", "MT+CF:Revised")
_SAVEPOINTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def statements(request):
    """Run `request()` from a cold cache with activity to record; return (response, its SQL statements)."""
    caches["default"].clear()
    Annotator.objects.update(last_seen_at=timezone.now() - timedelta(minutes=5))
    with CaptureQueriesContext(connection) as captured:
        response = request()
    return response, [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(_SAVEPOINTS)]


def within(budget: int, sql: list[str], what: str) -> None:
    listing = "\n".join(f"  {index}. {line[:200]}" for index, line in enumerate(sql, start=1))
    assert len(sql) <= budget, f"{what}: {len(sql)} statements, budget {budget}:\n{listing}"


def build_study_of(n_items: int, folder: Path, slug: str):
    """A study of four conditions x `n_items` items, imported from CSV files with the real bulk service."""
    study = study_create(
        config={
            "slug": slug,
            "title": slug,
            "explanations_per_annotator": 8,
            "ratings_per_explanation": 3,
            "attention_check_positions": [],
            "min_seconds_per_screen": 0.0,
        }
    )
    for number, label in enumerate(CONDITIONS):
        path = folder / f"{slug}-{number}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["item", "question", "answer", "text"])
            for index in range(n_items):
                writer.writerow(
                    [
                        f"q{index:06d}",
                        f"Question {index}: where is thing {index}?",
                        CHOICES[index % 5],
                        f"{label} on question {index}: because of reason {index}.",
                    ]
                )
        explanations_import_csv(
            study=study,
            condition_label=label,
            path=str(path),
            item_column="item",
            text_column="text",
            question_column="question",
            answer_column="answer",
            allow_unmatched=True,  # made-up questions, not CommonsenseQA's
        )
    return study_open(study=study)


def first_screen(client, study, label: str) -> tuple[int, float]:
    """Statement count and seconds of one annotator's first screen (the GET that allocates)."""
    url = start_rating(client, study, label)
    started = time.perf_counter()
    response, sql = statements(lambda: client.get(url))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and b'name="assignment"' in response.content
    within(FIRST_SCREEN_BUDGET, sql, f"first screen in the {study.slug} study")
    return len(sql), elapsed


def test_the_first_screen_costs_the_same_at_200_and_at_20000_explanations(client, tmp_path, capsys):
    small = build_study_of(50, tmp_path, "small")
    large = build_study_of(5000, tmp_path, "large")
    assert Explanation.objects.filter(item__study=small).count() == 200
    assert Explanation.objects.filter(item__study=large).count() == 20_000

    # Alternate, so that a busy moment of the machine does not fall on one study only.
    measured: dict[str, list[tuple[int, float]]] = {"small": [], "large": []}
    for index in range(3):
        for study in (small, large):
            measured[study.slug].append(first_screen(client, study, f"ann-{index}"))
    small_counts, small_seconds = zip(*measured["small"], strict=True)
    large_counts, large_seconds = zip(*measured["large"], strict=True)
    with capsys.disabled():
        print(
            f"\nfirst screen: 200 explanations {list(small_counts)} statements, "
            f"{statistics.median(small_seconds) * 1000:.1f} ms median (min {min(small_seconds) * 1000:.1f}); "
            f"20,000 explanations {list(large_counts)} statements, "
            f"{statistics.median(large_seconds) * 1000:.1f} ms median (min {min(large_seconds) * 1000:.1f})"
        )
    assert set(small_counts) == set(large_counts), "the same statements whatever the study's size"
    # The time is printed, not asserted: a timed assertion fails on a busy machine (speed lives in bench/load.py).
    for study in (small, large):
        screens = Assignment.objects.filter(annotator__study=study)
        assert screens.count() == 3 * 8
        assert sum(Explanation.objects.filter(item__study=study).values_list("reserved", flat=True)) == 24


@pytest.mark.parametrize(("mode", "constructs"), [("single", "default"), ("single", "paper"), ("pair", "paper")])
def test_screen_get_post_and_answer_budgets_whatever_the_number_of_constructs(client, mode, constructs):
    study = build_study(mode=mode, constructs=constructs, per_annotator=6 if mode == "pair" else 8)
    url = start_rating(client, study)
    assert client.get(url).status_code == 200  # allocates
    annotator = Annotator.objects.get()
    n_constructs = study.constructs.count()

    first = current(annotator)
    response, sql = statements(lambda: client.get(url))  # the reload of a screen shown before
    assert response.status_code == 200
    within(SCREEN_GET_BUDGET, sql, "screen GET (a reload)")

    construct = study.constructs.first()
    data = {"assignment": first.pk, "explanation": first.explanation_id, "construct": construct.pk, "value": 2}
    response, sql = statements(lambda: client.post(url + "answer/", data))
    assert response.status_code == 200 and response.json() == {"saved": True}
    within(ANSWER_BUDGET, sql, "autosaved answer")
    assert Rating.objects.get().value == 2

    response, sql = statements(lambda: client.post(url, screen_form(annotator, first)))
    assert response.status_code == 302
    within(SCREEN_POST_BUDGET, sql, f"screen POST with {n_constructs} constructs")
    sides = 2 if mode == "pair" else 1
    assert Rating.objects.filter(assignment=first).count() == sides * n_constructs
    assert set(Rating.objects.values_list("value", flat=True)) == {4}, "the full form overrides the autosave"

    response, sql = statements(lambda: client.get(url))  # the next screen, shown for the first time
    assert response.status_code == 200 and f'value="{current(annotator).pk}"'.encode() in response.content
    within(SCREEN_GET_BUDGET, sql, "screen GET (the next screen)")


def test_allocation_reads_a_condition_through_the_open_order_index(tmp_path):
    # The band's ORDER BY must spell the index's expression exactly, or the database sorts every open row again.
    from annotations.services.sessions import _open_candidates_statements

    study = build_study_of(5000, tmp_path, "indexed")
    condition = study.conditions.first()
    band = _open_candidates_statements(connection.alias).band.replace("{not_seen}", "").replace("{n}", "0")
    explain, sorting = ("EXPLAIN QUERY PLAN", "TEMP B-TREE") if connection.vendor == "sqlite" else ("EXPLAIN", "Sort")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotations_explanation")
        cursor.execute(f"{explain} {band}", [condition.pk, study.ratings_per_explanation, 64])
        plan = "\n".join(str(row[-1]) if connection.vendor == "sqlite" else row[0] for row in cursor.fetchall())
    assert "explanation_open_order" in plan, plan
    assert sorting not in plan, plan
