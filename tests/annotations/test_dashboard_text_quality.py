"""The study dashboard shows each condition's text-quality measures, computed from its current explanations."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.selectors import study_dashboard
from annotations.services.explanations import NO_EXPLANATION_TEXT
from annotations.services.studies import condition_get_or_create, explanation_set_text, item_get_or_create
from tests.annotations.factories import CHOICES, build_study

pytestmark = pytest.mark.django_db


def test_dashboard_shows_text_quality_per_condition(admin_client):
    study = build_study(conditions=("Readable",), n_items=4)
    noisy = condition_get_or_create(study=study, label="Noisy")
    texts = ["o the an an abbbbbbbbbbbbb", NO_EXPLANATION_TEXT, "This choice aligns.", "This choice aligns."]
    for index, text in enumerate(texts):
        item = item_get_or_create(
            study=study,
            key=f"q{index:03d}",
            question_text=f"Question number {index}: where would you find item {index}?",
            choices=CHOICES,
            answer=CHOICES[index % 5],
        )
        explanation_set_text(
            item=item,
            condition=noisy,
            text=text,
            source="manual",
            provenance={},
            predicted_answer=CHOICES[0],
        )
    by_label = {c.label: c.text_quality for c in study_dashboard(study).conditions}
    readable, noise = by_label["Readable"], by_label["Noisy"]
    # The factory's texts differ by their number, and share no content word with their question.
    assert readable["n"] == 4 and readable["non_empty"] == 100.0 and readable["distinct"] == 100.0
    assert readable["grounded"] == 0.0 and readable["degenerate"] == 0.0
    assert readable["accuracy"] is None, "the factory records no answers"
    assert noise["non_empty"] == 75.0 and noise["degenerate"] == 25.0 and noise["distinct"] == 25.0
    assert noise["grounded"] == 0.0
    assert noise["accuracy"] == 25.0 and noise["chance"] == 20.0  # only q000's answer is CHOICES[0]
    page = admin_client.get(reverse("annotations:dashboard", args=[study.slug]))
    assert b"Text quality per condition" in page.content
    assert b"<td>Noisy</td><td>4</td><td>75.0%</td><td>25.0%</td>" in page.content
