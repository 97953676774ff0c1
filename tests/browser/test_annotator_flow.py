"""The annotator's experience in a real browser: entry by link and by MTurk HIT, consent, demographics,
rating screens in single and pair mode, answers saved as they are given, keyboard use, accessibility and
phone width. Each page type is saved as a screenshot under artifacts/screenshots/ for people to look at."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from playwright.sync_api import Locator, Page, expect

from annotations.models import Annotator, Assignment, Rating, Study
from annotations.tokens import invite_token
from tests.annotations.factories import build_study, launch_crowd_batch
from tests.browser.conftest import STEP_TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DEMOGRAPHICS = {
    "Gender": "Prefer not to say",
    "Age": "25-34",
    "Highest education completed": "Master's degree",
    "Employment": "Student",
}
COUNTRY = "Netherlands"
PAIR_CONDITIONS = ("MT+CF:Unrevised", "MT+CF:Revised")
# Ratings are (explanation id, construct id) -> the point clicked, read from the row's data attributes.
Cells = dict[tuple[int, int], int]

# WCAG 2 contrast of every piece of visible text against the first opaque background behind it.
CONTRAST_OF_VISIBLE_TEXT = """
() => {
  const rgb = (css) => {
    const parts = css.match(/[\\d.]+/g).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const backgroundOf = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const colour = rgb(getComputedStyle(e).backgroundColor);
      if (colour.a > 0) return colour;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const results = [];
  for (const element of document.body.querySelectorAll("*")) {
    const ownText = Array.from(element.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(element);
    if (!ownText || !element.getClientRects().length || style.visibility === "hidden") continue;
    const [fg, bg] = [luminance(rgb(style.color)), luminance(backgroundOf(element))];
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    results.push({ text: element.textContent.trim().slice(0, 40), tag: element.tagName, ratio: ratio });
  }
  return results;
}
"""

RADIOS_OUTSIDE_A_NAMED_GROUP = """
() => Array.from(document.querySelectorAll("input[type=radio]"))
  .filter((radio) => {
    const legend = radio.closest("fieldset") && radio.closest("fieldset").querySelector("legend");
    return !legend || !legend.textContent.trim();
  })
  .map((radio) => radio.name + "=" + radio.value)
"""

# A scale's points in one line or one column; a scale that wraps sets its last points apart, as if they differed.
SCALES_THAT_WRAP = """
() => Array.from(document.querySelectorAll(".points"))
  .filter((points) => {
    const boxes = Array.from(points.children).map((point) => point.getBoundingClientRect());
    const same = (key) => boxes.every((box) => Math.abs(box[key] - boxes[0][key]) < 1);
    return !(same("top") || (same("left") && same("width")));
  })
  .map((points) => points.closest("fieldset").querySelector("legend").textContent.trim().slice(0, 40))
"""

FOCUS_RING_OF_ACTIVE_ELEMENT = """
() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  const ring = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  return { what: element.tagName + " " + (element.name || element.textContent.trim().slice(0, 30)), ring: ring };
}
"""


# --- what the annotator does ---------------------------------------------------------------------------------------


def invite_url(live_server, study: Study, label: str) -> str:
    token = invite_token(study_id=study.pk, label=label)
    return live_server.url + reverse("annotations:invite", args=[study.slug, token])


def consent(page: Page) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Before you start")
    page.get_by_label("I have read the information above and agree to take part.").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Instructions")


def open_demographics(page: Page) -> None:
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("About you")


def answer_demographics(page: Page) -> None:
    for label, choice in DEMOGRAPHICS.items():
        page.get_by_label(label).select_option(choice)
    page.get_by_label("Country of residence").fill(COUNTRY)
    page.get_by_role("button", name="Start rating").click()
    expect(page.locator("#screen-form")).to_be_visible()


def start_rating(page: Page) -> None:
    consent(page)
    open_demographics(page)
    answer_demographics(page)
    wait_for_screen_script(page)


def wait_for_screen_script(page: Page) -> None:
    """A rating screen's keys work once its script has run (it marks the form); a key pressed before goes nowhere."""
    page.wait_for_function("() => { const f = document.getElementById('screen-form'); return !f || f.dataset.ready; }")


def screen_id(page: Page) -> int:
    return int(page.locator("#screen-form").get_attribute("data-assignment"))


def is_attention_screen(page: Page) -> bool:
    return page.get_by_role("heading", name="A quick check").count() == 1


def rating_rows(page: Page) -> list[Locator]:
    return page.locator("fieldset[data-construct]").all()


def cell_of(row: Locator) -> tuple[int, int]:
    return int(row.get_attribute("data-explanation")), int(row.get_attribute("data-construct"))


def click_point(page: Page, row: Locator, value: int) -> None:
    """Click one point of a row's scale and wait until the page has saved it on the server."""
    with page.expect_response(lambda r: r.url.endswith("/answer/") and r.request.method == "POST") as saved:
        row.get_by_role("radio", name=re.compile(rf"^{value}\b")).check()
    assert saved.value.ok, saved.value.text()


def rate_rows(page: Page, rows: list[Locator], value_of_row: Callable[[int], int]) -> Cells:
    given: Cells = {}
    for index, row in enumerate(rows):
        value = value_of_row(index)
        click_point(page, row, value)
        given[cell_of(row)] = value
    return given


def answer_attention_check(page: Page) -> int:
    """Read the instruction on the row and pick the point it asks for, as an attentive annotator does."""
    legend = page.locator("fieldset[data-row] legend").inner_text()
    asked = int(re.search(r"choose (\d+)", legend).group(1))
    page.get_by_role("radio", name=str(asked), exact=True).check()
    return asked


def next_screen(page: Page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Next").click()
    wait_for_screen_script(page)


# --- what every page must offer -------------------------------------------------------------------------------------


def assert_accessible(page: Page) -> None:
    """Every control has an accessible name, every radio sits in a group named by its legend, text has contrast."""
    unnamed = []
    for control in page.locator("input:not([type=hidden]), select, textarea, button").all():
        first_line = control.aria_snapshot().splitlines()[0]
        if not re.match(r'^- \w+ ".+"', first_line):
            unnamed.append(first_line)
    assert not unnamed, f"controls without an accessible name: {unnamed}"
    assert page.evaluate(RADIOS_OUTSIDE_A_NAMED_GROUP) == []
    texts = page.evaluate(CONTRAST_OF_VISIBLE_TEXT)
    assert texts, "no visible text found: the contrast check would pass vacuously"
    faint = [t for t in texts if t["ratio"] < 4.5]
    assert not faint, f"text below 4.5:1 contrast: {faint}"


def assert_fits_width(page: Page) -> None:
    widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page scrolls sideways: {widths[0]}px of content in a {widths[1]}px window"


def assert_scales_in_one_line_or_column(page: Page) -> None:
    assert page.evaluate(SCALES_THAT_WRAP) == [], "a rating scale wraps onto a second line"


def assert_focus_visible_while_tabbing(page: Page, stops: int = 40) -> None:
    """Tab through the page: wherever focus lands, a ring of at least 2px shows it."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    seen = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_RING_OF_ACTIVE_ELEMENT)
        if focused is None or (seen and focused == seen[0]):
            break
        seen.append(focused)
    assert seen, "nothing on the page takes keyboard focus"
    assert all(stop["ring"] for stop in seen), [stop["what"] for stop in seen if not stop["ring"]]


# --- the tests ------------------------------------------------------------------------------------------------------


def test_annotator_by_link_rates_eight_explanations_and_the_database_holds_exactly_the_clicked_points(
    live_server, page: Page, screenshot
):
    study = build_study(slug="single-browser", per_annotator=8, attention_positions=[3])
    page.goto(invite_url(live_server, study, "ann-single"))
    assert_accessible(page)
    screenshot(page, "01-consent")
    consent(page)
    assert_accessible(page)
    screenshot(page, "02-instructions")
    open_demographics(page)
    assert_accessible(page)
    screenshot(page, "03-demographics")
    answer_demographics(page)

    clicked: Cells = {}
    screens = 0
    attention_answers = []
    while page.locator("#screen-form").count():
        screens += 1
        expect(page).to_have_title(re.compile(rf"^Screen {screens} of 9 "))
        if is_attention_screen(page):
            assert_accessible(page)
            screenshot(page, "05-attention-screen")
            attention_answers.append(answer_attention_check(page))
            next_screen(page)
            continue
        rows = rating_rows(page)
        assert len(rows) == 3, "one row per construct"
        if screens == 1:
            assert_accessible(page)
            assert_scales_in_one_line_or_column(page)
            screenshot(page, "04-single-screen")
        # Vary the points over screens and rows, so a swapped or dropped answer cannot go unnoticed.
        given = rate_rows(page, rows, lambda row, offset=screens: (offset + row) % 5 + 1)
        clicked |= given
        next_screen(page)

    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you!")
    expect(page.locator("#completion-code")).to_have_text(study.completion_code)
    assert_accessible(page)
    screenshot(page, "07-done")

    annotator = Annotator.objects.get(study=study)
    assert annotator.finished_at is not None and annotator.attention_failures == 0
    assert annotator.demographics == {
        "gender": "Prefer not to say",
        "age": "25-34",
        "country": COUNTRY,
        "education": "Master's degree",
        "employment": "Student",
    }
    assert screens == 9 and len(clicked) == 8 * 3
    stored = {(r.explanation_id, r.construct_id): r.value for r in Rating.objects.filter(annotator=annotator)}
    assert stored == clicked
    attention = annotator.assignments.get(kind=Assignment.Kind.ATTENTION)
    assert attention.position == 3 and [attention.attention_value] == attention_answers


def test_reload_half_way_through_a_screen_shows_the_same_screen_with_the_answers_given(live_server, page: Page):
    study = build_study(slug="reload-browser", per_annotator=4)
    page.goto(invite_url(live_server, study, "ann-reload"))
    start_rating(page)
    first, second, third = rating_rows(page)
    given = rate_rows(page, [first, second], lambda row: [2, 5][row])
    screen = screen_id(page)

    page.reload()

    assert screen_id(page) == screen
    first, second, third = rating_rows(page)
    expect(first.get_by_role("radio", name=re.compile(r"^2\b"))).to_be_checked()
    expect(second.get_by_role("radio", name=re.compile(r"^5\b"))).to_be_checked()
    expect(third.locator("input:checked")).to_have_count(0)
    # The page puts the annotator back on the first row still to answer.
    expect(third.get_by_role("radio", name=re.compile(r"^1\b"))).to_be_focused()

    given |= rate_rows(page, [third], lambda row: 3)
    next_screen(page)
    assert screen_id(page) != screen
    annotator = Annotator.objects.get(study=study)
    assert annotator.assignments.get(pk=screen).status == Assignment.Status.COMPLETED
    assert {(r.explanation_id, r.construct_id): r.value for r in annotator.ratings.all()} == given


def test_focus_ring_shows_wherever_tab_lands_on_consent_demographics_and_rating_screen(live_server, page: Page):
    study = build_study(slug="focus-browser", per_annotator=4)
    page.goto(invite_url(live_server, study, "ann-focus"))
    assert_focus_visible_while_tabbing(page)
    consent(page)
    open_demographics(page)
    assert_focus_visible_while_tabbing(page)
    answer_demographics(page)
    assert_focus_visible_while_tabbing(page)


def test_keyboard_alone_rates_a_screen_digits_pick_a_point_on_the_focused_row_and_enter_moves_on(
    live_server, page: Page
):
    study = build_study(slug="keyboard-browser", per_annotator=4)
    page.goto(invite_url(live_server, study, "ann-keys"))
    start_rating(page)
    screen = screen_id(page)
    rows = rating_rows(page)
    typed = {cell_of(row): digit for row, digit in zip(rows, (4, 1, 5), strict=True)}

    for row, digit in zip(rows, (4, 1, 5), strict=True):
        expect(row.locator("input").first).to_be_focused()
        with page.expect_response(lambda r: r.url.endswith("/answer/")):
            page.keyboard.press(str(digit))
        expect(row.get_by_role("radio", name=re.compile(rf"^{digit}\b"))).to_be_checked()
        assert page.evaluate(FOCUS_RING_OF_ACTIVE_ELEMENT)["ring"], "the focused point shows a focus ring"
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert screen_id(page) != screen
    annotator = Annotator.objects.get(study=study)
    assert annotator.assignments.get(pk=screen).status == Assignment.Status.COMPLETED
    assert {(r.explanation_id, r.construct_id): r.value for r in annotator.ratings.all()} == typed


def test_enter_on_an_unfinished_screen_stays_and_points_at_the_missing_row(live_server, page: Page):
    study = build_study(slug="unfinished-browser", per_annotator=4)
    page.goto(invite_url(live_server, study, "ann-unfinished"))
    start_rating(page)
    screen = screen_id(page)
    expect(rating_rows(page)[0].locator("input").first).to_be_focused()
    page.keyboard.press("3")
    page.keyboard.press("Enter")

    second = rating_rows(page)[1]
    expect(second.locator("input").first).to_be_focused()
    assert screen_id(page) == screen
    assert Assignment.objects.get(pk=screen).status == Assignment.Status.ASSIGNED


def test_pair_mode_rates_both_explanations_of_four_pairs_and_stores_each_preference(
    live_server, page: Page, screenshot
):
    study = build_study(slug="pair-browser", mode="pair", conditions=PAIR_CONDITIONS, per_annotator=4)
    page.goto(invite_url(live_server, study, "ann-pair"))
    start_rating(page)

    clicked: Cells = {}
    preferred: dict[int, int | None] = {}
    for pair in range(4):
        expect(page.get_by_role("heading", name="Explanation A")).to_be_visible()
        expect(page.get_by_role("heading", name="Explanation B")).to_be_visible()
        rows = rating_rows(page)
        assert len(rows) == 2 * 3, "both explanations rated on every construct"
        clicked |= rate_rows(page, rows, lambda row, offset=pair: (offset * 2 + row) % 5 + 1)
        shown_as_a = cell_of(rows[0])[0]
        shown_as_b = cell_of(rows[3])[0]
        choice = ["Explanation A", "Explanation B", "Equally good", "Explanation A"][pair]
        page.get_by_role("radio", name=choice, exact=True).check()
        preferred[screen_id(page)] = {"Explanation A": shown_as_a, "Explanation B": shown_as_b}.get(choice)
        if pair == 0:
            assert_accessible(page)
            assert_scales_in_one_line_or_column(page)
            screenshot(page, "06-pair-screen")
        next_screen(page)

    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you!")
    annotator = Annotator.objects.get(study=study)
    assert annotator.finished_at is not None
    stored = {(r.explanation_id, r.construct_id): r.value for r in annotator.ratings.all()}
    assert len(clicked) == 4 * 2 * 3 and stored == clicked
    screens = annotator.assignments.filter(pk__in=preferred)
    assert {s.pk: s.preferred_explanation_id for s in screens} == preferred
    assert [s.no_preference for s in screens.order_by("position")] == [False, False, True, False]


def test_mturk_preview_offers_nothing_to_submit(live_server, page: Page, screenshot):
    study = build_study(slug="preview-browser", per_annotator=4)
    launch_crowd_batch(study, platform="mturk", external_ids=["H1"])
    query = urlencode({"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"})
    page.goto(f"{live_server.url}{reverse('annotations:mturk', args=[study.slug])}?{query}")

    expect(page.get_by_role("note")).to_contain_text("This is a preview")
    expect(page.locator("form, input, select, textarea, button")).to_have_count(0)
    assert_accessible(page)
    screenshot(page, "08-mturk-preview")
    assert not Annotator.objects.filter(study=study).exists()


def test_mturk_worker_submits_the_hit_and_turk_submit_to_receives_the_assignment_id(
    live_server, page: Page, screenshot, settings, mturk_submit_recorder
):
    settings.MTURK_SUBMIT_ORIGINS = [mturk_submit_recorder.origin]
    study = build_study(slug="hit-browser", per_annotator=4)
    launch_crowd_batch(study, platform="mturk", external_ids=["H1"])
    query = urlencode(
        {"assignmentId": "A1", "hitId": "H1", "workerId": "W1", "turkSubmitTo": mturk_submit_recorder.origin}
    )
    page.goto(f"{live_server.url}{reverse('annotations:mturk', args=[study.slug])}?{query}")
    start_rating(page)
    while page.locator("#screen-form").count():
        rate_rows(page, rating_rows(page), lambda row: 4)
        next_screen(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you!")
    screenshot(page, "07-done-mturk")
    assert mturk_submit_recorder.posts == []

    page.get_by_role("button", name="Submit HIT").click()

    expect(page.get_by_role("heading", name="HIT submitted")).to_be_visible()
    assert page.url.startswith(f"{mturk_submit_recorder.origin}/mturk/externalSubmit")
    (posted,) = mturk_submit_recorder.posts
    assert posted["assignmentId"] == ["A1"]
    assert posted["completionCode"] == [study.completion_code]


def test_phone_width_pages_do_not_scroll_sideways(live_server, browser, screenshot):
    single = build_study(slug="phone-single", per_annotator=4, attention_positions=[2])
    pair = build_study(slug="phone-pair", mode="pair", conditions=PAIR_CONDITIONS, per_annotator=4)
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(invite_url(live_server, single, "ann-phone"))
        assert_fits_width(page)
        consent(page)
        assert_fits_width(page)
        open_demographics(page)
        assert_fits_width(page)
        answer_demographics(page)
        assert_fits_width(page)
        assert_scales_in_one_line_or_column(page)
        screenshot(page, "09-phone-single-screen")
        rate_rows(page, rating_rows(page), lambda row: 2)
        next_screen(page)
        assert is_attention_screen(page)
        assert_fits_width(page)
        assert_scales_in_one_line_or_column(page)
        screenshot(page, "09-phone-attention-screen")

        page.goto(invite_url(live_server, pair, "ann-phone"))
        start_rating(page)
        assert_fits_width(page)
        assert_scales_in_one_line_or_column(page)
        screenshot(page, "09-phone-pair-screen")
    finally:
        context.close()
