"""Annotator sessions through the test client: entry, consent, demographics, screens, checks and completion."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from annotations.models import Annotator, Assignment, Rating
from annotations.tokens import annotator_token, invite_token
from tests.annotations.factories import build_study, launch_crowd_batch

pytestmark = pytest.mark.django_db

DEMOGRAPHICS = {
    "gender": "Prefer not to say",
    "age": "25-34",
    "country": "Netherlands",
    "education": "Master's degree",
    "employment": "Student",
}


def enter_by_link(client, study, label="ann-1"):
    token = invite_token(study_id=study.pk, label=label)
    response = client.get(reverse("annotations:invite", args=[study.slug, token]))
    assert response.status_code == 302
    return response["Location"]


def start_rating(client, study, label="ann-1"):
    url = enter_by_link(client, study, label)
    assert client.post(url, {"action": "consent", "agree": "yes"}).status_code == 302
    assert client.post(url, {"action": "demographics", **DEMOGRAPHICS}).status_code == 302
    return url


def screen_form(annotator, assignment, value=4):
    data = {"action": "screen", "assignment": assignment.pk}
    if assignment.kind == Assignment.Kind.ATTENTION:
        data["attention"] = assignment.expected_value
        return data
    for explanation_id in filter(None, [assignment.explanation_id, assignment.second_explanation_id]):
        for construct in annotator.study.constructs.all():
            data[f"r-{explanation_id}-{construct.pk}"] = value
    if assignment.kind == Assignment.Kind.PAIR:
        data["preference"] = assignment.explanation_id
    return data


def current(annotator):
    return annotator.assignments.filter(status="assigned").order_by("position").first()


def test_link_flow_stores_exactly_the_given_ratings_and_finishes_with_a_code(client):
    study = build_study(attention_positions=[3])
    url = start_rating(client, study)
    page = client.get(url)
    assert page.status_code == 200
    annotator = Annotator.objects.get()
    assert annotator.demographics == DEMOGRAPHICS
    assert annotator.assignments.exclude(kind="attention").count() == 8
    assert annotator.assignments.filter(kind="attention", position=3).exists()

    while (assignment := current(annotator)) is not None:
        client.get(url)  # shows the screen, which starts its clock
        assert client.post(url, screen_form(annotator, assignment)).status_code == 302

    done = client.get(url)
    assert done.status_code == 200
    annotator.refresh_from_db()
    assert annotator.finished_at and annotator.completion_code == study.completion_code
    assert re.search(rf"completion code is:.*{study.completion_code}", done.content.decode(), re.S)
    assert Rating.objects.count() == 8 * 3
    conditions = annotator.assignments.exclude(kind="attention").values_list("explanation__condition__label", flat=True)
    assert sorted(set(conditions)) == ["CF:Unrevised", "MT+CF:Revised", "MT+CF:Unrevised", "MT:Unrevised"]
    assert list(conditions).count("MT:Unrevised") == 2
    items = annotator.assignments.exclude(kind="attention").values_list("explanation__item_id", flat=True)
    assert len(set(items)) == 8, "no question twice"
    assert all(a.seconds_spent is not None for a in annotator.assignments.all())


def test_out_of_range_value_is_refused_and_stores_nothing(client):
    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    form = screen_form(annotator, assignment)
    key = next(k for k in form if k.startswith("r-"))
    form[key] = 6
    response = client.post(url, form)
    assert response.status_code == 400
    assert "not on the 1-5 scale" in response.content.decode()
    assert Rating.objects.count() == 0
    assert current(annotator).pk == assignment.pk


def test_missing_construct_is_refused_and_stores_nothing(client):
    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    form = screen_form(annotator, current(annotator))
    form.pop(next(k for k in form if k.startswith("r-")))
    response = client.post(url, form)
    assert response.status_code == 400
    assert "please answer every statement" in response.content.decode()
    assert Rating.objects.count() == 0


def test_another_annotators_explanation_is_forbidden(client, caplog):
    study = build_study()
    url_a = start_rating(client, study, "ann-a")
    url_b = start_rating(client, study, "ann-b")
    client.get(url_a)
    client.get(url_b)
    a, b = Annotator.objects.get(external_id="ann-a"), Annotator.objects.get(external_id="ann-b")
    theirs = next(
        x
        for x in b.assignments.exclude(kind="attention")
        if x.explanation_id not in set(a.assignments.values_list("explanation_id", flat=True))
    )
    form = screen_form(a, current(a))
    form[f"r-{theirs.explanation_id}-{study.constructs.first().pk}"] = 3
    assert client.post(url_a, form).status_code == 403
    # Or B's whole screen sent with A's token:
    assert client.post(url_a, screen_form(b, current(b))).status_code == 403
    assert Rating.objects.count() == 0
    assert "annotator request refused (403)" in caplog.text


def test_tampered_or_foreign_token_is_refused(client):
    study = build_study()
    other = build_study(slug="other-study")
    url = start_rating(client, study)
    tampered = url.rstrip("/")[:-3] + "xyz/"
    assert client.get(tampered).status_code == 403
    annotator = Annotator.objects.get()
    foreign = annotator_token(study_id=other.pk, annotator_public_id=str(annotator.public_id))
    assert client.get(reverse("annotations:session", args=[study.slug, foreign])).status_code == 403
    assert client.get(reverse("annotations:session", args=[other.slug, foreign])).status_code == 403
    bad_invite = reverse("annotations:invite", args=[study.slug, invite_token(study_id=other.pk, label="x")])
    assert client.get(bad_invite).status_code == 403
    assert Annotator.objects.count() == 1


def test_resent_screen_changes_nothing(client):
    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    form = screen_form(annotator, assignment, value=2)
    assert client.post(url, form).status_code == 302
    again = screen_form(annotator, assignment, value=5)
    assert client.post(url, again).status_code == 409
    assert set(Rating.objects.values_list("value", flat=True)) == {2}


def test_autosaved_answers_survive_a_reload(client):
    study = build_study()
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    construct = study.constructs.first()
    answer_url = url + "answer/"
    saved = client.post(
        answer_url,
        {"assignment": assignment.pk, "explanation": assignment.explanation_id, "construct": construct.pk, "value": 4},
    )
    assert saved.status_code == 200
    page = client.get(url).content.decode()
    assert re.search(rf'name="r-{assignment.explanation_id}-{construct.pk}" value="4" required\s+checked', page)
    refused = client.post(
        answer_url,
        {"assignment": assignment.pk, "explanation": assignment.explanation_id, "construct": construct.pk, "value": 9},
    )
    assert refused.status_code == 400
    assert Rating.objects.get().value == 4


def test_failed_attention_check_gives_the_failure_code(client):
    study = build_study(attention_positions=[1])
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    while (assignment := current(annotator)) is not None:
        client.get(url)
        form = screen_form(annotator, assignment)
        if assignment.kind == "attention":
            form["attention"] = assignment.expected_value % 5 + 1
        client.post(url, form)
    client.get(url)
    annotator.refresh_from_db()
    assert annotator.attention_failures == 1
    assert annotator.completion_code == study.failed_attention_code


def test_pair_mode_rates_both_sides_and_stores_the_preference(client):
    study = build_study(mode="pair", conditions=("MT+CF:Unrevised", "MT+CF:Revised"), per_annotator=4)
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    pairs = list(annotator.assignments.all())
    assert len(pairs) == 4 and all(p.kind == "pair" for p in pairs)
    for pair in pairs:
        assert pair.explanation.item_id == pair.second_explanation.item_id
        assert pair.explanation.condition_id != pair.second_explanation.condition_id
        client.get(url)
        no_preference = screen_form(annotator, pair)
        no_preference.pop("preference")
        assert client.post(url, no_preference).status_code == 400
        assert client.post(url, screen_form(annotator, pair)).status_code == 302
    assert Rating.objects.count() == 4 * 2 * 3
    assert Assignment.objects.exclude(preferred_explanation=None).count() == 4


def test_mturk_preview_cannot_submit_and_completion_posts_the_assignment_id(client, settings):
    settings.MTURK_SUBMIT_ORIGINS = ["https://workersandbox.mturk.com"]
    study = build_study(per_annotator=4)
    launch_crowd_batch(study, platform="mturk", external_ids=["H1"])
    preview = client.get(
        reverse("annotations:mturk", args=[study.slug]), {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"}
    )
    assert preview.status_code == 200
    assert b"<form" not in preview.content and Annotator.objects.count() == 0

    forged = client.get(
        reverse("annotations:mturk", args=[study.slug]),
        {"assignmentId": "A1", "hitId": "H1", "workerId": "W1", "turkSubmitTo": "https://evil.example"},
    )
    assert forged.status_code == 400 and Annotator.objects.count() == 0

    entry = client.get(
        reverse("annotations:mturk", args=[study.slug]),
        {"assignmentId": "A1", "hitId": "H1", "workerId": "W1", "turkSubmitTo": "https://workersandbox.mturk.com"},
    )
    url = entry["Location"]
    client.post(url, {"action": "consent", "agree": "yes"})
    client.post(url, {"action": "demographics", **DEMOGRAPHICS})
    client.get(url)
    annotator = Annotator.objects.get()
    assert annotator.source == "mturk" and annotator.external_assignment_id == "A1"
    while (assignment := current(annotator)) is not None:
        client.get(url)
        client.post(url, screen_form(annotator, assignment))
    done = client.get(url).content.decode()
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in done
    assert 'name="assignmentId" value="A1"' in done


def test_prolific_redirect_carries_the_completion_code(client):
    study = build_study(per_annotator=4)
    launch_crowd_batch(study, platform="manual", external_ids=["S1"])  # a Prolific study made by hand
    entry = client.get(
        reverse("annotations:prolific", args=[study.slug]),
        {"PROLIFIC_PID": "5f1a2b3c4d", "STUDY_ID": "S1", "SESSION_ID": "X1"},
    )
    url = entry["Location"]
    client.post(url, {"action": "consent", "agree": "yes"})
    client.post(url, {"action": "demographics", **DEMOGRAPHICS})
    client.get(url)
    annotator = Annotator.objects.get()
    while (assignment := current(annotator)) is not None:
        client.get(url)
        client.post(url, screen_form(annotator, assignment))
    done = client.get(url).content.decode()
    href = re.search(r'href="([^"]+)" id="prolific-return"', done).group(1).replace("&amp;", "&")
    assert urlsplit(href).netloc == "app.prolific.com"
    assert parse_qs(urlsplit(href).query)["cc"] == [study.completion_code]


def test_annotator_pages_need_no_cookie_and_may_be_framed_by_mturk(client):
    study = build_study()
    url = enter_by_link(client, study)
    response = client.get(url)
    assert not response.cookies, "no cookie is set inside the MTurk frame"
    assert "X-Frame-Options" not in response
    assert "frame-ancestors" in response["Content-Security-Policy"]


def test_dashboard_needs_staff(client, admin_client):
    study = build_study()
    assert client.get(reverse("annotations:dashboard", args=[study.slug])).status_code == 302
    page = admin_client.get(reverse("annotations:dashboard", args=[study.slug]))
    assert page.status_code == 200 and b"Ratings per condition" in page.content
