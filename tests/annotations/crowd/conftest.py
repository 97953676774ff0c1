"""Fixtures for crowd tests: a small open study, MTurk and Prolific settings, and local stand-in servers."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotations.models import Annotator, CrowdBatch, CrowdTask
from annotations.services.sessions import annotator_enter
from tests.annotations.crowd.fake_mturk import FakeMTurkServer
from tests.annotations.crowd.fake_prolific import TOKEN, FakeProlificServer
from tests.annotations.factories import build_study

PUBLIC_URL = "https://evalsite.example.org"


@pytest.fixture
def crowd_settings(settings, monkeypatch):
    settings.EVALSITE_PUBLIC_URL = PUBLIC_URL
    settings.MTURK_AWS_ACCESS_KEY_ID = "AKIDEVALSITETEST"
    settings.MTURK_AWS_SECRET_ACCESS_KEY = "test-secret"
    settings.MTURK_SANDBOX = True
    settings.MTURK_ENDPOINT_URL = ""
    settings.MTURK_REGION = "us-east-1"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return settings


@pytest.fixture
def study(db):
    return build_study(slug="crowd-study", conditions=("MT:Unrevised", "CF:Unrevised"), n_items=3, per_annotator=2)


@pytest.fixture
def mturk_server(crowd_settings):
    """A local MTurk stand-in, named by MTURK_ENDPOINT_URL as any MTurk-compatible endpoint would be."""
    server = FakeMTurkServer().start()
    crowd_settings.MTURK_ENDPOINT_URL = server.url
    yield server.service
    server.stop()


@pytest.fixture
def prolific_server(crowd_settings):
    server = FakeProlificServer().start()
    crowd_settings.PROLIFIC_API_URL = server.url
    crowd_settings.PROLIFIC_API_TOKEN = TOKEN
    yield server.service
    server.stop()


def launched_entry_data(study, source: str) -> dict:
    """The hitId or STUDY_ID a platform would pass for the study's earliest launched batch."""
    if source == "mturk":
        task = CrowdTask.objects.filter(batch__study=study, batch__platform="mturk").exclude(external_id="").first()
        return {"hitId": task.external_id} if task else {}
    batch = CrowdBatch.objects.filter(study=study, platform__in=("prolific", "manual")).order_by("id").first()
    if batch is None:
        return {}
    return {"STUDY_ID": batch.external_id if batch.platform == "prolific" else batch.params.get("prolific_study_id")}


def _code(study, finished: bool, attention_failures: int) -> str:
    if not finished:
        return ""
    return study.failed_attention_code if attention_failures else study.completion_code


def participant(
    study,
    *,
    source: str,
    worker_id: str,
    assignment_id: str,
    finished: bool = True,
    attention_failures: int = 0,
    flags: dict | None = None,
    platform_data: dict | None = None,
) -> Annotator:
    """An annotator entered through the real entry service, then given an outcome.

    Unless ``platform_data`` names it, the entry comes through the study's first launched HIT (MTurk) or its
    Prolific study (the batch's id, or the manual batch's given id), as a real one must.
    """
    annotator = annotator_enter(
        study=study,
        source=source,
        external_id=worker_id,
        external_assignment_id=assignment_id,
        platform_data={**launched_entry_data(study, source), **(platform_data or {})},
    )
    Annotator.objects.filter(pk=annotator.pk).update(
        finished_at=timezone.now() if finished else None,
        attention_failures=attention_failures,
        flags=flags or {},
        completion_code=_code(study, finished, attention_failures),
    )
    annotator.refresh_from_db()
    return annotator
