"""Many annotators asking for work at once on PostgreSQL: targets hold, no repeats, balance within each."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from annotations.models import Annotator, Assignment
from annotations.services import sessions
from tests.annotations.factories import build_study

N_ANNOTATORS = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_annotators_never_overshoot_a_target():
    assert connection.vendor == "postgresql", "this test is about row locks on the real database"
    study = build_study(n_items=20, per_annotator=8, ratings_per_explanation=3)
    annotators = [
        sessions.annotator_enter(study=study, source="link", external_id=f"ann-{i:02d}") for i in range(N_ANNOTATORS)
    ]
    start = threading.Barrier(N_ANNOTATORS)
    errors: list[BaseException] = []

    def ask_for_work(annotator: Annotator) -> None:
        try:
            start.wait()
            sessions.assignments_allocate(annotator=annotator)
        except BaseException as exc:  # reported below, with the thread's own exception
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask_for_work, args=(a,)) for a in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    screens = Assignment.objects.filter(annotator__study=study).select_related("explanation__condition")
    per_explanation = Counter(screens.values_list("explanation_id", flat=True))
    assert max(per_explanation.values()) <= 3
    assert sum(per_explanation.values()) == 20 * 4 * 3, "every slot is used once work runs out"

    served = 0
    for annotator in annotators:
        mine = [s for s in screens if s.annotator_id == annotator.pk]
        if not mine:
            continue
        served += 1
        items = [s.explanation.item_id for s in mine]
        assert len(items) == len(set(items)), "nobody sees a question twice"
        per_condition = Counter(s.explanation.condition.label for s in mine)
        assert len(per_condition) == 4 and len(set(per_condition.values())) == 1, per_condition
    assert served == 20 * 4 * 3 // 8
