"""Who may enter a study through a crowd platform: the launched batch behind an entry, or a refusal saying why."""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone

from annotations.crowd import selectors
from annotations.crowd.platforms import provider_for
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import Annotator, CrowdBatch, CrowdPlatform, CrowdSubmission, CrowdTask, Study

logger = logging.getLogger("evalsite.crowd")


class EntryRefused(Exception):
    """An entry that no launched batch of the study stands behind; the message is shown to the visitor."""


def crowd_sources() -> tuple[str, ...]:
    return (Annotator.Source.MTURK, Annotator.Source.PROLIFIC)


def mturk_task_for_hit(*, study: Study, hit_id: str) -> CrowdTask | None:
    """The task of one of the study's MTurk batches that MTurk knows as ``hit_id`` (stored at launch)."""
    if not hit_id:
        return None
    return (
        CrowdTask.objects.filter(batch__study=study, batch__platform=CrowdPlatform.MTURK, external_id=hit_id)
        .select_related("batch")
        .first()
    )


def prolific_batch_for_study_id(*, study: Study, prolific_study_id: str) -> CrowdBatch | None:
    """The study's Prolific batch with this Prolific study id, or its manual batch the admin gave that id."""
    if not prolific_study_id:
        return None
    return (
        CrowdBatch.objects.filter(study=study)
        .filter(
            Q(platform=CrowdPlatform.PROLIFIC, external_id=prolific_study_id)
            | Q(platform=CrowdPlatform.MANUAL, params__prolific_study_id=prolific_study_id)
        )
        .exclude(status=CrowdBatch.Status.DRAFT)
        .first()
    )


def assignment_used_by_another(*, source: str, assignment_id: str, worker_id: str) -> bool:
    """Whether another worker entered (or submitted) with this MTurk assignmentId or Prolific SESSION_ID."""
    if not assignment_id:
        return False
    other_annotator = (
        Annotator.objects.filter(source=source, external_assignment_id=assignment_id)
        .exclude(external_id=worker_id)
        .exists()
    )
    other_submission = (
        CrowdSubmission.objects.filter(external_assignment_id=assignment_id, batch__platform=source)
        .exclude(worker_id=worker_id)
        .exists()
    )
    return other_annotator or other_submission


def entry_batch(*, study: Study, source: str, worker_id: str, assignment_id: str, platform_data: dict) -> CrowdBatch:
    """The launched batch an MTurk or Prolific entry belongs to; raises EntryRefused when there is none."""
    if source == Annotator.Source.MTURK:
        task = mturk_task_for_hit(study=study, hit_id=str(platform_data.get("hitId", "")))
        if task is None:
            raise EntryRefused(
                "This HIT is not one of this study's HITs. Please return it on MTurk; "
                "if you think this is a mistake, write to the requester."
            )
        if not assignment_id:
            raise EntryRefused("The HIT link has no assignmentId. Please accept the HIT on MTurk first.")
        batch = task.batch
    elif source == Annotator.Source.PROLIFIC:
        found = prolific_batch_for_study_id(study=study, prolific_study_id=str(platform_data.get("STUDY_ID", "")))
        if found is None:
            raise EntryRefused(
                "This link does not belong to one of this study's Prolific studies. "
                "Please open the study from your Prolific dashboard."
            )
        batch = found
        if batch.platform == CrowdPlatform.PROLIFIC:
            _check_prolific_session(batch, participant_id=worker_id, session_id=assignment_id)
    else:
        raise EntryRefused(f"Entries from {source!r} are not taken; use the link you were given.")
    if assignment_used_by_another(source=source, assignment_id=assignment_id, worker_id=worker_id):
        raise EntryRefused(
            "This assignment belongs to another worker. Please open the task from your own account on the platform."
        )
    return batch


def _check_prolific_session(batch: CrowdBatch, *, participant_id: str, session_id: str) -> None:
    """Ask Prolific whose SESSION_ID this is: a made-up participant id with a real STUDY_ID gets no session."""
    if not session_id:
        raise EntryRefused("The Prolific link has no SESSION_ID. Please open the study from your Prolific dashboard.")
    try:
        owner = provider_for(batch.platform).session_owner(selectors.batch_spec(batch), assignment_id=session_id)
    except CrowdPlatformError as exc:
        logger.warning("could not check Prolific session %s (batch %s): %s", session_id, batch.pk, exc)
        raise EntryRefused("Prolific did not answer just now. Please reload this page in a minute.") from exc
    if owner is None or owner[0] != participant_id or (owner[1] and owner[1] != batch.external_id):
        raise EntryRefused(
            "Prolific does not know this session for your account in this study. "
            "Please open the study from your Prolific dashboard."
        )


def crowd_worker_exclude_at_entry(*, batch_id: int, worker_id: str) -> bool:
    """Grant the exclusion qualification as soon as a worker enters, so their next HIT of the study is hidden.

    Runs after the entry commits; a platform failure is logged and left to the next sync, which grants it too.
    """
    batch = CrowdBatch.objects.filter(pk=batch_id).select_related("study").first()
    if batch is None or batch.platform != CrowdPlatform.MTURK or not batch.exclusion_qualification_id:
        return False
    try:
        provider_for(batch.platform).exclude_workers(selectors.batch_spec(batch), worker_ids=[worker_id])
    except Exception as exc:  # the entry must not fail because MTurk is slow or down
        logger.warning("could not shut out %s at entry (batch %s): %s", worker_id, batch.pk, exc)
        return False
    annotator = Annotator.objects.filter(
        study=batch.study, source=Annotator.Source.MTURK, external_id=worker_id
    ).first()
    if annotator is not None:
        annotator.platform_data = {**(annotator.platform_data or {}), "excluded_at": timezone.now().isoformat()}
        annotator.save(update_fields=["platform_data"])
    return True
