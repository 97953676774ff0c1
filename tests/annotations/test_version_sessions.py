"""The version rule (docs/versions.md): a screen rates the version it was allocated; the dashboard counts
progress and means over current versions and says how many ratings are of superseded ones."""

from __future__ import annotations

import pytest

from annotations.models import Explanation, Rating
from annotations.selectors import study_dashboard
from annotations.services.studies import explanation_set_text
from tests.annotations.factories import build_study
from tests.annotations.test_sessions import current, screen_form, start_rating

pytestmark = pytest.mark.django_db


def regenerate_all(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for explanation in Explanation.objects.filter(item__study=study, is_current=True).select_related("item"):
        _, outcome = explanation_set_text(
            item=explanation.item,
            condition=explanation.condition,
            text=f"Regenerated: {explanation.text}",
            source="manual",
            provenance={"test": "regenerated"},
        )
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def test_screens_allocated_before_a_regeneration_rate_the_version_they_were_allocated(client):
    study = build_study(slug="versions", conditions=("MT:Unrevised",), n_items=4, per_annotator=4)
    url = start_rating(client, study, label="early")
    client.get(url)
    early = study.annotators.get(external_id="early")
    first = current(early)
    client.post(url, screen_form(early, first, value=2))
    allocated = list(early.assignments.order_by("position").values_list("explanation_id", flat=True))
    assert len(allocated) == 4

    # Every allocated version is kept as it was; each item gets a new current version.
    assert regenerate_all(study) == {"new_version": 4}
    assert not Explanation.objects.filter(pk__in=allocated, is_current=True).exists()

    while (assignment := current(early)) is not None:
        page = client.get(url).content.decode()
        shown = Explanation.objects.get(pk=assignment.explanation_id)
        assert shown.version == 1 and shown.text in page and "Regenerated:" not in page
        client.post(url, screen_form(early, assignment, value=2))
    assert set(Rating.objects.values_list("explanation_id", flat=True)) == set(allocated)

    dashboard = study_dashboard(study)
    (condition,) = dashboard.conditions
    constructs = study.constructs.count()
    assert condition.superseded_ratings == 4 * constructs
    assert condition.ratings_done == 0 and all(mean is None for mean in condition.mean_per_construct.values())

    # A session allocated after the regeneration gets the new versions.
    url = start_rating(client, study, label="late")
    client.get(url)
    late = study.annotators.get(external_id="late")
    while (assignment := current(late)) is not None:
        assert Explanation.objects.get(pk=assignment.explanation_id).is_current
        client.get(url)
        client.post(url, screen_form(late, assignment, value=5))
    (condition,) = study_dashboard(study).conditions
    assert condition.ratings_done == 4 and condition.superseded_ratings == 4 * constructs
    assert set(condition.mean_per_construct.values()) == {5.0}
