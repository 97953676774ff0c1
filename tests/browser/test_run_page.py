"""Staff run a student from the admin alone, in a real browser: create it through the typed form, train it,
train it longer, generate its explanations into a new condition of a study, and regenerate them. The run page
is saved as a screenshot at each stage under artifacts/screenshots/ for people to look at."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotations.models import Condition, Explanation
from annotations.services.studies import study_create
from distillation.models import StudentRun
from evalsite.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-staff-password-for-the-test"
# A tiny student trains 4 steps and answers 8 dev questions in seconds; a job still running after this failed.
JOB_TIMEOUT_S = 180


@pytest.fixture
def staff_page(live_server, page: Page) -> Page:
    get_user_model().objects.create_superuser("staff", "staff@example.org", PASSWORD)
    page.goto(live_server.url + reverse("admin:login"))
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    return page


def wait_for_newest_job(kind: str) -> Job:
    """The newest job of ``kind`` once it has finished; its error if it failed."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = Job.objects.filter(kind=kind).order_by("-pk").first()
        if job is not None and not job.is_active:
            assert job.status == Job.Status.DONE, f"job {job.pk} {job.status}: {job.error}"
            return job
        time.sleep(0.5)
    pytest.fail(f"no {kind} job finished within {JOB_TIMEOUT_S} s")


def start_and_follow(page: Page, button: str, kind: str) -> Job:
    """Press a button of the run page, follow the job link it gives, and come back once the job has ended."""
    run_page = page.url
    page.get_by_role("button", name=button).click()
    link = page.locator(".messagelist a", has_text="job")
    expect(link).to_be_visible()
    job = wait_for_newest_job(kind)
    link.first.click()
    expect(page.get_by_text(job.get_status_display(), exact=True).first).to_be_visible()
    page.goto(run_page)
    return job


def summary_value(page: Page, name: str) -> str:
    return page.locator(".field-summary tr", has=page.locator("th", has_text=name)).locator("td").inner_text()


def test_staff_create_train_train_longer_generate_and_regenerate_a_run_without_the_command_line(
    live_server, staff_page: Page, screenshot, teacher_data, settings, tmp_path
):
    settings.REDIS_URL = ""  # jobs run in a thread of the live server once their transaction commits
    settings.EVALSITE_ARTIFACTS_DIR = str(tmp_path / "artifacts")
    study = study_create(config={"slug": "staff-study", "conditions": ["Existing"]})
    page = staff_page

    # Create: typed fields with the core's defaults shown, the newest teacher run preselected.
    page.goto(live_server.url + reverse("admin:distillation_studentrun_add"))
    page.get_by_label("Name").fill("browser run")
    page.get_by_label("Method").select_option("mtcf")
    page.get_by_label("Training data").select_option("unrevised")
    for name, value in [
        ("max_steps", "4"),
        ("batch_size", "2"),
        ("max_input_tokens", "96"),
        ("max_target_tokens", "64"),
        ("eval_every", "0"),
    ]:
        page.locator(f'input[name="{name}"]').fill(value)
    screenshot(page, "run-create-form")
    page.get_by_role("button", name="Save and continue editing").click()
    run = StudentRun.objects.get()
    assert run.hyperparameters["max_steps"] == 4 and run.teacher_run is not None
    expect(page.locator(".field-summary")).to_contain_text("not trained yet")

    start_and_follow(page, "Train (or resume) and evaluate", "student_training")
    assert summary_value(page, "status") == "evaluated"
    assert summary_value(page, "trained steps") == "4"
    expect(page.locator(".field-training_curves svg").first).to_be_visible()
    screenshot(page, "run-page-trained")

    page.get_by_role("link", name="Train longer").click()
    steps = page.get_by_label("Train to step")
    expect(steps).to_have_value("8")
    page.get_by_role("button", name="Train longer").click()
    wait_for_newest_job("student_training")
    page.reload()
    assert summary_value(page, "trained steps") == "8"
    assert "from step 4 to 8" in summary_value(page, "trained longer")
    assert StudentRun.objects.get().prediction_sets.count() == 2  # one per evaluation, none rewritten

    page.get_by_role("link", name="Generate explanations into a study").click()
    page.get_by_label("Study").select_option(str(study.pk))
    page.get_by_label("or a new condition named").fill("MT+CF:Unrevised")
    page.get_by_label("Limit").fill("6")
    page.get_by_role("button", name="Generate").click()
    generation = wait_for_newest_job("generate_explanations")
    condition = Condition.objects.get(study=study, label="MT+CF:Unrevised")
    assert Explanation.objects.filter(condition=condition, is_current=True).count() == 6
    assert generation.message

    page.reload()
    expect(page.locator(".field-shown_in")).to_contain_text("MT+CF:Unrevised")
    regeneration = start_and_follow(page, "Regenerate explanations", "regenerate_explanations")
    assert "unchanged" in regeneration.message
    assert Explanation.objects.filter(condition=condition, is_current=True).count() == 6
    screenshot(page, "run-page-after-regeneration")
