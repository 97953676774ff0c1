"""Reads for crowd batches: who is excluded, what a batch will cost, how far it has got, what to review."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum

from annotations.crowd.costs import (
    MTURK_BONUS_FEE_RATE,
    MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE,
    MTURK_MIN_FEE,
    CostBreakdown,
    batch_cost,
)
from annotations.crowd.providers import BatchSpec
from annotations.crowd.review import verdict
from annotations.models import Annotator, BlockedWorker, CrowdBatch, CrowdPlatform, CrowdSubmission, CrowdTask, Study


def exclusion_groups(study: Study) -> set[str]:
    """A study's own slug and every exclusion group its batches named."""
    groups = {study.slug}
    for params in CrowdBatch.objects.filter(study=study).values_list("params", flat=True):
        if isinstance(params, dict) and params.get("exclusion_group"):
            groups.add(str(params["exclusion_group"]))
    return groups


def exclusion_reason(*, study: Study, platform: str, worker_id: str) -> str:
    """'blocked' for a blocked worker, 'took_part' for one who took part in this study or one sharing its
    exclusion group, else ''.

    The entry service calls this before creating an annotator; it backs up the platform's own exclusion
    (MTurk qualification, Prolific previous-studies filter), which a worker may slip past.
    """
    if not worker_id:
        return ""
    if BlockedWorker.objects.filter(platform=platform, worker_id=worker_id).exists():
        return "blocked"
    groups = exclusion_groups(study)
    related_batches = CrowdBatch.objects.filter(Q(study__slug__in=groups) | Q(params__exclusion_group__in=groups))
    if CrowdSubmission.objects.filter(
        batch__in=related_batches, batch__platform=platform, worker_id=worker_id
    ).exists():
        return "took_part"
    related_studies = Study.objects.filter(Q(slug__in=groups) | Q(crowd_batches__in=related_batches))
    if Annotator.objects.filter(study__in=related_studies, source=platform, external_id=worker_id).exists():
        return "took_part"
    return ""


def worker_is_excluded(*, study: Study, platform: str, worker_id: str) -> bool:
    return bool(exclusion_reason(study=study, platform=platform, worker_id=worker_id))


def batch_spec(batch: CrowdBatch) -> BatchSpec:
    study = batch.study
    earlier = (
        CrowdBatch.objects.filter(platform=batch.platform, study__in=_group_studies(study))
        .exclude(pk=batch.pk)
        .exclude(external_id="")
        .values_list("external_id", flat=True)
    )
    return BatchSpec(
        batch_id=batch.pk,
        study_slug=study.slug,
        platform=batch.platform,
        sandbox=batch.sandbox,
        title=batch.title,
        description=batch.description,
        reward_cents=batch.reward_cents,
        assignments_per_task=batch.assignments_per_task,
        n_tasks=batch.n_tasks,
        params=dict(batch.params or {}),
        external_id=batch.external_id,
        exclusion_qualification_id=batch.exclusion_qualification_id,
        completion_code=study.completion_code,
        failed_attention_code=study.failed_attention_code,
        public_url=settings.EVALSITE_PUBLIC_URL,
        earlier_external_ids=tuple(sorted(earlier)) if batch.platform == CrowdPlatform.PROLIFIC else (),
    )


def _group_studies(study: Study):
    groups = exclusion_groups(study)
    return Study.objects.filter(Q(slug__in=groups) | Q(crowd_batches__params__exclusion_group__in=groups)).distinct()


def previous_exclusion_qualification(*, study: Study, sandbox: bool) -> str:
    """The MTurk exclusion qualification an earlier batch of this study made (one per study and environment)."""
    return (
        CrowdBatch.objects.filter(study=study, platform=CrowdPlatform.MTURK, sandbox=sandbox)
        .exclude(exclusion_qualification_id="")
        .order_by("created_at")
        .values_list("exclusion_qualification_id", flat=True)
        .first()
        or ""
    )


def cost_estimate(
    *,
    platform: str,
    reward_cents: int,
    n_tasks: int,
    assignments_per_task: int,
    fee_rate: Decimal,
    planned_bonus_cents: int = 0,
    planned_bonus_count: int = 0,
) -> CostBreakdown:
    return batch_cost(
        reward_cents=reward_cents,
        assignments=n_tasks * assignments_per_task,
        fee_rate=Decimal(fee_rate),
        bonus_cents=planned_bonus_cents,
        bonus_count=planned_bonus_count,
        min_fee=MTURK_MIN_FEE if platform == CrowdPlatform.MTURK else Decimal(0),
        bonus_fee_rate=MTURK_BONUS_FEE_RATE if platform == CrowdPlatform.MTURK else None,
    )


def batch_cost_estimate(batch: CrowdBatch) -> CostBreakdown:
    return cost_estimate(
        platform=batch.platform,
        reward_cents=batch.reward_cents,
        n_tasks=batch.n_tasks,
        assignments_per_task=batch.assignments_per_task,
        fee_rate=batch.fee_rate,
        planned_bonus_cents=batch.planned_bonus_cents,
        planned_bonus_count=int((batch.params or {}).get("planned_bonus_count", 0)),
    )


@dataclass
class BatchProgress:
    tasks_planned: int
    tasks_created: int
    assignments_planned: int
    submissions: dict[str, int] = field(default_factory=dict)
    to_approve: int = 0
    to_reject: int = 0
    to_check: int = 0
    bonuses_paid: Decimal = Decimal("0.00")
    bonuses_unconfirmed: int = 0
    excluded: int = 0

    @property
    def submitted_total(self) -> int:
        return sum(self.submissions.values())

    @property
    def percent(self) -> int:
        return round(100 * self.submitted_total / self.assignments_planned) if self.assignments_planned else 0


def batch_progress(batch: CrowdBatch) -> BatchProgress:
    tasks = batch.tasks.aggregate(
        created=Count("id", filter=~Q(external_id="")), planned=Sum("max_assignments"), n=Count("id")
    )
    submissions = dict(
        batch.submissions.values_list("status").annotate(n=Count("id")).order_by().values_list("status", "n")
    )
    progress = BatchProgress(
        tasks_planned=batch.n_tasks,
        tasks_created=tasks["created"] or 0,
        assignments_planned=tasks["planned"] or batch.n_tasks * batch.assignments_per_task,
        submissions=submissions,
    )
    for flags in batch.submissions.filter(status=CrowdSubmission.Status.SUBMITTED).values_list("flags", flat=True):
        outcome = verdict(flags or {})
        if outcome == "approve":
            progress.to_approve += 1
        elif outcome == "reject":
            progress.to_reject += 1
        else:
            progress.to_check += 1
    paid = batch.submissions.filter(bonus_paid_at__isnull=False).aggregate(total=Sum("bonus_cents"))["total"] or 0
    progress.bonuses_paid = (Decimal(paid) / 100).quantize(Decimal("0.01"))
    progress.bonuses_unconfirmed = batch.submissions.filter(
        bonus_attempted_at__isnull=False, bonus_paid_at__isnull=True
    ).count()
    progress.excluded = batch.submissions.filter(excluded_at__isnull=False).count()
    return progress


def submissions_for_review(batch: CrowdBatch, *, status: str | None = None):
    queryset = batch.submissions.select_related("annotator", "task").order_by("status", "submitted_at", "id")
    if status:
        queryset = queryset.filter(status=status)
    return queryset


@dataclass(frozen=True)
class WorkerEvidence:
    """What a reviewer needs to judge one worker's session."""

    screens_done: int
    screens_total: int
    median_seconds: float | None
    attention: list[tuple[int | None, int | None]]  # (answer given, answer expected) per check
    straight_lining: bool
    too_fast: bool
    ratings: list[tuple[str, list[int]]]  # per construct, the values in screen order

    @property
    def attention_failed(self) -> int:
        return sum(1 for given, expected in self.attention if given != expected)


def worker_evidence(annotator: Annotator) -> WorkerEvidence:
    from statistics import median

    from annotations.models import Assignment

    assignments = [a for a in annotator.assignments.all() if a.status != Assignment.Status.RELEASED]
    done = [a for a in assignments if a.status == Assignment.Status.COMPLETED]
    seconds = [a.seconds_spent for a in done if a.seconds_spent is not None]
    attention = [(a.attention_value, a.expected_value) for a in done if a.kind == Assignment.Kind.ATTENTION]
    by_construct: dict[str, list[int]] = {}
    for rating in sorted(annotator.ratings.all(), key=lambda r: (r.assignment_id, r.construct_id)):
        by_construct.setdefault(rating.construct.name, []).append(rating.value)
    flags = annotator.flags or {}
    return WorkerEvidence(
        screens_done=len(done),
        screens_total=len(assignments),
        median_seconds=round(median(seconds), 1) if seconds else None,
        attention=attention,
        straight_lining=bool(flags.get("straight_lining")),
        too_fast=bool(flags.get("too_fast")),
        ratings=sorted(by_construct.items()),
    )


def submissions_with_evidence(
    batch: CrowdBatch, *, status: str | None = None
) -> list[tuple[CrowdSubmission, str, WorkerEvidence | None]]:
    """The review screen's rows: each submission, the suggested decision, and its worker's evidence."""
    queryset = submissions_for_review(batch, status=status).prefetch_related(
        "annotator__assignments", "annotator__ratings__construct"
    )
    return [
        (
            submission,
            verdict(submission.flags or {}),
            worker_evidence(submission.annotator) if submission.annotator else None,
        )
        for submission in queryset
    ]


def submissions_with_verdicts(batch: CrowdBatch, *, status: str | None = None) -> list[tuple[CrowdSubmission, str]]:
    return [
        (submission, verdict(submission.flags or {})) for submission in submissions_for_review(batch, status=status)
    ]


def batch_jobs(batch: CrowdBatch, *, limit: int = 10):
    from django.contrib.contenttypes.models import ContentType

    from evalsite.models import Job

    return Job.objects.filter(
        target_type=ContentType.objects.get_for_model(CrowdBatch), target_id=str(batch.pk)
    ).order_by("-created_at")[:limit]


def manual_links(batch: CrowdBatch) -> dict[str, str]:
    """What an admin pastes into a platform by hand: the study URL, the study id it admits, and the codes."""
    from annotations.crowd.prolific import study_url

    public_url = settings.EVALSITE_PUBLIC_URL
    return {
        "prolific_style_url": study_url(public_url, batch.study.slug),
        "admitted_study_id": str((batch.params or {}).get("prolific_study_id", "")),
        "completion_code": batch.study.completion_code,
        "failed_attention_code": batch.study.failed_attention_code,
        "screenout_code": str((batch.params or {}).get("screenout_code", "")),
    }


def worker_preview_url(batch: CrowdBatch) -> str:
    """Where an admin sees the HITs as workers do (MTurk's preview of the HIT type), once launched."""
    from annotations.crowd.mturk import preview_url

    if batch.platform != CrowdPlatform.MTURK or not batch.external_id:
        return ""
    return preview_url(sandbox=batch.sandbox, hit_type_id=batch.external_id)


def refill_cost(batch: CrowdBatch) -> tuple[int, CostBreakdown]:
    """How many places a refill adds now and what they cost (rewards and fees)."""
    places = sum(extra for _task, extra in refill_plan(batch))
    cost = cost_estimate(
        platform=batch.platform,
        reward_cents=batch.reward_cents,
        n_tasks=1,
        assignments_per_task=places,
        fee_rate=batch.fee_rate,
    )
    return places, cost


def refill_plan(batch: CrowdBatch) -> list[tuple[CrowdTask, int]]:
    """Per task, the places to add for work that freed its place and was not refilled before.

    MTurk offers returned and abandoned assignments again by itself, so only rejected ones count there; on
    Prolific rejected, returned and timed-out submissions count (screened-out ones do not: no work was left).
    A HIT made with fewer than 10 assignments stays below 10 (MTurk refuses to cross, and the fee would rise).
    """
    plan = []
    for task in batch.tasks.exclude(external_id="").order_by("id"):
        submissions = task.submissions.all()
        if batch.platform == CrowdPlatform.MTURK:
            freed = submissions.filter(status=CrowdSubmission.Status.REJECTED).count()
        else:
            freed = (
                submissions.filter(status__in=[CrowdSubmission.Status.REJECTED, CrowdSubmission.Status.RETURNED])
                .exclude(platform_status__iexact="SCREENED OUT")
                .count()
            )
        extra = freed - (task.max_assignments - batch.assignments_per_task)
        if batch.platform == CrowdPlatform.MTURK and batch.assignments_per_task <= MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE:
            extra = min(extra, MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE - task.max_assignments)
        if extra > 0:
            plan.append((task, extra))
    return plan


CURRENCY_SYMBOLS = {"USD": "$", "GBP": "£", "EUR": "€"}


def batch_currency(batch: CrowdBatch) -> str:
    """The currency a batch pays in: MTurk's US dollars, or the Prolific account's (learnt at launch)."""
    if batch.platform == CrowdPlatform.MTURK:
        return "USD"
    return str((batch.params or {}).get("currency", ""))


def money_label(currency: str) -> str:
    """What goes before an amount: a symbol, the code, or a note that the account's currency applies."""
    if not currency:
        return "(account currency) "
    return CURRENCY_SYMBOLS.get(currency, f"{currency} ")
