"""Allocation's bookkeeping: each explanation's reserved count follows the screens that hold it, through
allocation, completion, the time limit and the stale-screen release; and views write only through services."""

from __future__ import annotations

import ast
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from annotations.models import Annotator, Assignment, Explanation, Study
from annotations.services import sessions
from tests.annotations.factories import build_study
from tests.annotations.test_sessions import current, screen_form, start_rating

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def held_counts(study) -> Counter:
    """Per explanation, the screens that hold it (released ones aside), counted from the screens themselves."""
    live = Assignment.objects.filter(annotator__study=study).exclude(status=Assignment.Status.RELEASED)
    counts = Counter(live.exclude(explanation=None).values_list("explanation_id", flat=True))
    counts.update(live.exclude(second_explanation=None).values_list("second_explanation_id", flat=True))
    return counts


def reserved_counts(study) -> Counter:
    rows = Explanation.objects.filter(item__study=study).values_list("pk", "reserved")
    return Counter({pk: reserved for pk, reserved in rows if reserved})


@pytest.mark.parametrize("mode", ["single", "pair"])
def test_reserved_counts_follow_the_screens_through_completion_time_limit_and_stale_release(client, mode):
    study = build_study(mode=mode, per_annotator=6 if mode == "pair" else 8)
    first = start_rating(client, study, "ann-1")
    second = start_rating(client, study, "ann-2")
    client.get(first)
    client.get(second)
    one, two = Annotator.objects.get(external_id="ann-1"), Annotator.objects.get(external_id="ann-2")
    assert reserved_counts(study) == held_counts(study) and sum(held_counts(study).values()) > 0

    done = current(one)
    assert client.post(first, screen_form(one, done)).status_code == 302
    assert reserved_counts(study) == held_counts(study), "a completed screen keeps its places"

    # The first annotator's time runs out: what they have not done goes back, what they did stays.
    Study.objects.filter(pk=study.pk).update(time_limit_minutes=1)
    Annotator.objects.filter(pk=one.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    client.get(first)
    assert one.assignments.filter(status=Assignment.Status.ASSIGNED).count() == 0
    assert reserved_counts(study) == held_counts(study)
    assert done.explanation_id in held_counts(study)

    # The second annotator goes quiet past the timeout: their screens are released to others.
    Annotator.objects.filter(pk=two.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    assert sessions.assignments_release_stale(study=study) == two.assignments.count()
    assert reserved_counts(study) == held_counts(study)
    assert not two.assignments.exclude(status=Assignment.Status.RELEASED).exists()


def test_a_second_allocation_of_the_same_annotator_gives_the_same_screens():
    study = build_study()
    annotator = sessions.annotator_enter(study=study, source="link", external_id="ann-1")
    screens = sessions.assignments_allocate(annotator=annotator)
    again = sessions.assignments_allocate(annotator=annotator)
    assert sorted(a.pk for a in again) == sorted(a.pk for a in screens)
    assert reserved_counts(study) == held_counts(study)


def test_the_annotator_views_write_only_through_services():
    """The GET handler writes (allocation, completion, first shown), but through services: the annotator
    views touch no model manager and save no model themselves."""
    tree = ast.parse((ROOT / "annotations" / "views.py").read_text(encoding="utf-8"))
    found = [
        f"views.py:{node.lineno} .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"objects", "save", "delete", "refresh_from_db"}
    ]
    assert found == [], found
