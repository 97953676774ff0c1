"""Automatic metrics of a study's explanation versions: computing and storing them (resumable: what is stored is
skipped) and starting that as a job. The reads (`metric:<name>` columns, fingerprint) are in the selectors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from annotations.models import Explanation, ExplanationMetric, Study
from distillation.ml import explanation_metrics as core
from distillation.models import TeacherOutput, TeacherOutputKind
from evalsite.jobs import NO_PROGRESS, Progress, enqueue_job

METRICS_JOB_KIND = "score_explanations"
# What the admin action computes: the metrics that need no model beyond the study's own students.
ADMIN_METRICS = ("length", "teacher_overlap", "consistency")
BATCH_SIZE = 16


class MetricsUnavailable(ValueError):
    """The request cannot be scored as given (unknown construct, missing judge, bad checkpoint)."""


@dataclass
class _Run:
    stored: int = 0
    skipped: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    done: int = 0


def explanation_key(explanation: Explanation) -> str:
    """How a judge's replay file names an explanation version: `<item source id>/<condition label>/v<version>`."""
    return f"{explanation.item.source_id}/{explanation.condition.label}/v{explanation.version}"


def _explanations(study: Study) -> list[Explanation]:
    return list(
        Explanation.objects.filter(item__study=study)
        .select_related("item__question", "condition__student_run", "prediction__student_run")
        .order_by("id")
    )


def _teacher_rationales(explanations: Sequence[Explanation]) -> dict[int, str]:
    """Per explanation id, the teacher's rationale for its question: from the teacher run its student learnt from
    when that run has one, else the newest rationale stored for the question."""
    question_ids = {e.item.question_id for e in explanations if e.item.question_id}
    by_question: dict[int, dict[int, str]] = {}
    newest: dict[int, str] = {}
    outputs = (
        TeacherOutput.objects.filter(question_id__in=question_ids, kind=TeacherOutputKind.RATIONALE, empty=False)
        .order_by("created_at", "id")
        .values_list("question_id", "run_id", "text")
    )
    for question_id, run_id, text in outputs:
        if text.strip():
            by_question.setdefault(question_id, {})[run_id] = text
            newest[question_id] = text
    rationales = {}
    for explanation in explanations:
        question_id = explanation.item.question_id
        if question_id not in newest:
            continue
        run = _student_run(explanation)
        own_teacher = run.teacher_run_id if run else None
        rationales[explanation.pk] = by_question[question_id].get(own_teacher, newest[question_id])
    return rationales


def _student_run(explanation: Explanation):
    if explanation.prediction_id and explanation.prediction.student_run_id:
        return explanation.prediction.student_run
    return explanation.condition.student_run


def _predicted_answer(explanation: Explanation) -> str:
    if explanation.predicted_answer:
        return explanation.predicted_answer
    return explanation.prediction.predicted_answer if explanation.prediction_id else ""


def _stored_keys(study: Study) -> set[tuple[int, str, str]]:
    rows = ExplanationMetric.objects.filter(explanation__item__study=study)
    return set(rows.values_list("explanation_id", "name", "version"))


def _store(explanations: Sequence[Explanation], scores: Sequence[Sequence[core.Score]], job_id: int | None) -> int:
    rows = [
        ExplanationMetric(
            explanation=explanation,
            name=score.name,
            version=score.version[:500],
            value=score.value,
            detail=score.detail,
            raw_reply=score.raw_reply,
            job_id=job_id,
        )
        for explanation, per_explanation in zip(explanations, scores, strict=True)
        for score in per_explanation
    ]
    with transaction.atomic():
        # A second job on the same study may have stored some meanwhile: those are kept, not duplicated.
        ExplanationMetric.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _check_request(study: Study, families: Sequence[str], *, judge: str, checkpoint: str, embedder: str) -> None:
    constructs = set(study.constructs.values_list("name", flat=True))
    for family in families:
        if family.startswith(core.JUDGE_PREFIX):
            construct = family[len(core.JUDGE_PREFIX) :]
            if construct not in constructs:
                raise MetricsUnavailable(
                    f"{family}: {construct!r} is not a construct of {study.slug} "
                    f"(its constructs: {', '.join(sorted(constructs))})"
                )
            if not judge:
                raise MetricsUnavailable(f"{family} needs a judge: hf:PATH, openai:MODEL or replay:FILE")
    from distillation.ml.text import check_model_location

    for path in (checkpoint, embedder):
        if path:
            try:
                check_model_location(path)
            except FileNotFoundError as exc:
                raise MetricsUnavailable(str(exc)) from exc


def explanation_metrics_compute(
    *,
    study: Study,
    metrics: Sequence[str] | str,
    judge: str = "",
    checkpoint: str = "",
    embedder: str = "",
    progress: Progress = NO_PROGRESS,
    job_id: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Score every explanation version of the study with each metric, storing each batch as it is done; what is
    stored already (same metric, same version) is skipped, so a rerun resumes. Returns counts and messages."""
    families = core.parse_metric_list(metrics if isinstance(metrics, str) else ",".join(metrics))
    _check_request(study, families, judge=judge, checkpoint=checkpoint, embedder=embedder)
    explanations = _explanations(study)
    stored = _stored_keys(study)
    rationales = _teacher_rationales(explanations)
    run = _Run()
    total = len(explanations) * len(families)
    for family in families:
        stage = f"scoring {family}"
        progress(run.done, total, stage=stage)
        if family == core.LENGTH:
            todo = _missing(explanations, family, lambda e: core.LENGTH_VERSION, stored, run)
            for batch in _batches(todo, batch_size):
                scores = [core.length_scores(e.text) for e in batch]
                _advance(run, _store(batch, scores, job_id), len(batch), progress, total, stage)
        elif family == core.TEACHER_OVERLAP:
            context = _Context(explanations, stored, run, job_id, progress, total, batch_size)
            _score_against_rationale(context, family, core.rouge_version(), rationales, _overlap_scores)
        elif family == core.CONSISTENCY:
            _score_consistency(explanations, stored, run, job_id, progress, total, batch_size, checkpoint)
        elif family == core.EMBEDDING_SIMILARITY:
            if not embedder:
                run.messages.append("embedding_similarity skipped: give a sentence-embedding checkpoint (--embedder)")
                run.done += len(explanations)
                continue
            context = _Context(explanations, stored, run, job_id, progress, total, batch_size)
            version = f"{core.EMBEDDING_VERSION}|{embedder}"
            _score_against_rationale(context, family, version, rationales, _LazyEmbedder(embedder))
        else:
            _score_judge(study, family, explanations, stored, run, job_id, progress, total, batch_size, judge)
        progress(run.done, total, stage=stage)
    return {
        "explanations": len(explanations),
        "stored": run.stored,
        "skipped": dict(run.skipped),
        "messages": run.messages,
    }


@dataclass
class _Context:
    explanations: Sequence[Explanation]
    stored: set[tuple[int, str, str]]
    run: _Run
    job_id: int | None
    progress: Progress
    total: int
    batch_size: int


class _LazyEmbedder:
    """Loads the embedding checkpoint on first use, so a run with nothing left to score loads nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loaded: tuple[Any, Any] | None = None

    def __call__(self, pairs: list[tuple[str, str]]) -> list[core.Score]:
        if self.loaded is None:
            self.loaded = core.load_embedder(self.path)
        return core.embedding_similarity_scores(*self.loaded, pairs, path=self.path)


def _overlap_scores(pairs: list[tuple[str, str]]) -> list[core.Score]:
    return [core.teacher_overlap_score(text, rationale) for text, rationale in pairs]


def _score_against_rationale(
    context: _Context,
    family: str,
    version: str,
    rationales: dict[int, str],
    score_pairs: Callable[[list[tuple[str, str]]], list[core.Score]],
) -> None:
    """Metrics that compare an explanation with the teacher's rationale for its question."""
    run = context.run
    todo = _missing(context.explanations, family, lambda e: version, context.stored, run)
    with_rationale = [e for e in todo if e.pk in rationales]
    _skip(run, len(todo) - len(with_rationale), "no teacher rationale for the question", family)
    run.done += len(todo) - len(with_rationale)
    for batch in _batches(with_rationale, context.batch_size):
        scores = score_pairs([(e.text, rationales[e.pk]) for e in batch])
        stored = _store(batch, [[score] for score in scores], context.job_id)
        _advance(run, stored, len(batch), context.progress, context.total, f"scoring {family}")


def _batches(items: Sequence[Explanation], size: int) -> Iterable[list[Explanation]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _missing(
    explanations: Sequence[Explanation],
    family: str,
    version_of: Callable[[Explanation], str | None],
    stored: set[tuple[int, str, str]],
    run: _Run,
) -> list[Explanation]:
    """The explanations that lack one of the family's scores at the version they would get now."""
    todo = []
    for explanation in explanations:
        version = version_of(explanation)
        if version is not None and all(
            (explanation.pk, name, version[:500]) in stored for name in core.scores_of(family)
        ):
            run.skipped[f"{family}: stored already"] += 1
            run.done += 1
            continue
        todo.append(explanation)
    return todo


def _skip(run: _Run, count: int, reason: str, family: str) -> None:
    if count:
        run.skipped[f"{family}: {reason}"] += count


def _advance(run: _Run, stored: int, n: int, progress: Progress, total: int, stage: str) -> None:
    run.stored += stored
    run.done += n
    progress(run.done, total, stage=stage)


def _consistency_checkpoint(explanation: Explanation, checkpoint: str) -> str | None:
    if checkpoint:
        return checkpoint
    student_run = _student_run(explanation)
    return student_run.checkpoint_dir if student_run and student_run.checkpoint_dir else None


def _score_consistency(explanations, stored, run, job_id, progress, total, batch_size, checkpoint) -> None:
    from distillation.ml.students import load_student

    stage = f"scoring {core.CONSISTENCY}"

    def version_of(explanation: Explanation) -> str | None:
        path = _consistency_checkpoint(explanation, checkpoint)
        return f"{core.CONSISTENCY_VERSION}|{path}" if path else None

    todo = _missing(explanations, core.CONSISTENCY, version_of, stored, run)
    by_checkpoint: dict[str, list[Explanation]] = {}
    for explanation in todo:
        path = _consistency_checkpoint(explanation, checkpoint)
        if path is None:
            run.skipped["consistency: no student checkpoint (give --checkpoint)"] += 1
            run.done += 1
        elif not explanation.item.choices:
            run.skipped["consistency: the item has no choices"] += 1
            run.done += 1
        elif not _predicted_answer(explanation):
            run.skipped["consistency: no predicted answer stored"] += 1
            run.done += 1
        else:
            by_checkpoint.setdefault(path, []).append(explanation)
    for path, group in by_checkpoint.items():
        student = load_student(path)
        student.model.to(_device())
        for batch in _batches(group, batch_size):
            cases = [
                core.ConsistencyInput(e.item.question_text, tuple(e.item.choices), e.text, _predicted_answer(e))
                for e in batch
            ]
            scores = core.consistency_scores(
                student, cases, version=f"{core.CONSISTENCY_VERSION}|{path}", batch_size=batch_size
            )
            _advance(run, _store(batch, scores, job_id), len(batch), progress, total, stage)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _score_judge(study, family, explanations, stored, run, job_id, progress, total, batch_size, judge) -> None:
    from distillation.ml.teachers import build_teacher

    construct = study.constructs.get(name=family[len(core.JUDGE_PREFIX) :])
    rubric = core.JudgeRubric(
        name=construct.name,
        label=construct.label,
        prompt=construct.prompt,
        scale_size=construct.scale_size,
        anchors=tuple(construct.anchors or ()),
    )
    version = core.judge_version(judge)
    todo = _missing(explanations, family, lambda e: version, stored, run)
    if not todo:
        return
    backend = build_teacher(
        judge, openai_base_url=settings.OPENAI_BASE_URL, openai_api_key=settings.OPENAI_API_KEY or None
    )
    try:
        for batch in _batches(todo, batch_size):
            cases = [
                core.JudgeCase(
                    key=explanation_key(e),
                    question=e.item.question_text,
                    choices=tuple(e.item.choices),
                    answer=e.item.answer if study.show_correct_answer else "",
                    explanation=e.text,
                )
                for e in batch
            ]
            scores = core.judge_scores(backend, rubric, cases, spec=judge)
            failures = sum(score.value is None for score in scores)
            if failures:
                run.skipped[f"{family}: reply not a scale point (stored as a failure)"] += failures
            stored_now = _store(batch, [[score] for score in scores], job_id)
            _advance(run, stored_now, len(batch), progress, total, f"scoring {family}")
    finally:
        backend.close()


def explanation_metrics_start(
    *,
    study: Study,
    metrics: Sequence[str] = ADMIN_METRICS,
    judge: str = "",
    checkpoint: str = "",
    embedder: str = "",
    user: Any = None,
):
    """Queue the scoring job (on RQ with REDIS_URL, else in a thread), after the transaction commits."""
    from annotations.jobs import metrics as jobs

    families = core.parse_metric_list(",".join(metrics))
    _check_request(study, families, judge=judge, checkpoint=checkpoint, embedder=embedder)
    return enqueue_job(
        kind=METRICS_JOB_KIND,
        function=jobs.score_explanations,
        params={
            "study_id": study.pk,
            "metrics": families,
            "judge": judge,
            "checkpoint": checkpoint,
            "embedder": embedder,
        },
        target=study,
        user=user,
    )
