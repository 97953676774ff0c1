"""A rating screen reads top to bottom: it opens on its question, long unbroken text wraps, the keys are told."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from annotations.models import Explanation
from annotations.services.studies import explanation_set_text
from tests.annotations.factories import build_study
from tests.browser.test_annotator_flow import PAIR_CONDITIONS, PHONE, invite_url, start_rating

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1366, "height": 768}
# What the demo's byte-level students wrote before they learnt: long, and one run of a single letter.
LONG_TEXT = ("o the an an a" + "b" * 400 + " ") + " ".join(["because the river is wide and cold"] * 40)

LAYOUT = """
() => {
  const heading = document.querySelector(".question h1").getBoundingClientRect();
  const progress = document.getElementById("progress").getBoundingClientRect();
  return {
    scrollY: window.scrollY, pageWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth,
    questionTop: heading.top, progressTop: progress.top,
    focused: document.activeElement && document.activeElement.closest("[data-row]") !== null,
  };
}
"""


def lengthen_every_explanation(study) -> None:
    for explanation in Explanation.objects.filter(item__study=study, is_current=True):
        explanation_set_text(
            item=explanation.item, condition=explanation.condition, text=LONG_TEXT, source="manual", provenance={}
        )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("mode", ["single", "pair"])
def test_a_screen_with_a_long_explanation_opens_on_its_question_and_wraps(
    live_server, page: Page, screenshot, viewport, mode
):
    conditions = PAIR_CONDITIONS if mode == "pair" else ("CF:Unrevised",)
    study = build_study(slug=f"long-{mode}", mode=mode, conditions=conditions, per_annotator=4)
    lengthen_every_explanation(study)
    page.set_viewport_size(viewport)
    page.goto(invite_url(live_server, study, f"ann-long-{mode}"))
    start_rating(page)
    layout = page.evaluate(LAYOUT)
    screenshot(page, f"long-{mode}-{viewport['width']}")
    assert layout["focused"], "the first rating row has the focus, for the keys"
    assert layout["scrollY"] == 0 and 0 <= layout["questionTop"] < viewport["height"], layout
    assert 0 <= layout["progressTop"] < viewport["height"], layout
    assert layout["pageWidth"] <= layout["viewWidth"], f"the page is {layout['pageWidth']} px wide"


def test_the_pair_hint_says_how_to_answer_the_preference_by_keyboard(live_server, page: Page):
    study = build_study(slug="pair-hint", mode="pair", conditions=PAIR_CONDITIONS, per_annotator=4)
    page.goto(invite_url(live_server, study, "ann-hint"))
    start_rating(page)
    expect(page.locator("#keys-hint")).to_contain_text("Tab to it, then pick with the arrow keys or Space")
    # And it is true: digits rate row after row from the first; then Tab reaches the preference, an arrow picks.
    for _ in page.locator("fieldset[data-construct]").all():
        page.keyboard.press("3")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.name") == "preference"
    page.keyboard.press("ArrowDown")
    assert page.locator('input[name="preference"]:checked').count() == 1
