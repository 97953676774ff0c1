"""Teacher generation: find or start a run, feed the generation core its questions, store each batch."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import transaction

from distillation.ml.records import QuestionRecord
from distillation.models import Dataset, Question, Teacher, TeacherOutput, TeacherRun
from evalsite.jobs import Progress, enqueue_job

# A tiny random model has a short context and writes noise: few examples and short outputs keep it quick.
TINY_TEACHER_SHOTS = 1
TINY_TEACHER_MAX_NEW_TOKENS = 48
BACKENDS = {"hf": Teacher.Backend.HF, "openai": Teacher.Backend.OPENAI, "replay": Teacher.Backend.REPLAY}


def teacher_for_spec(spec: str) -> Teacher:
    kind, _, target = spec.partition(":")
    backend = Teacher.Backend.TINY if spec == "tiny" else BACKENDS.get(kind)
    if backend is None:
        raise ValueError(f"teacher {spec!r}: expected hf:PATH, openai:MODEL, replay:FILE or tiny")
    teacher, _ = Teacher.objects.get_or_create(name=spec[:200], defaults={"backend": backend, "model_id": target})
    return teacher


def prompt_config_summary(
    *, versions: dict[str, str], seed: int, chat: bool, fewshot_digest: str, max_new_tokens: int | None
) -> dict[str, Any]:
    """What makes two runs' outputs comparable; its fingerprint names the run a restart continues."""
    summary = {
        "versions": versions,
        "seed": seed,
        "chat": chat,
        "fewshot_digest": fewshot_digest,
        "max_new_tokens": max_new_tokens,
    }
    summary["fingerprint"] = hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]
    return summary


def teacher_run_get_or_create(
    *, teacher: Teacher, dataset: Dataset, split: str, prompt_config: dict[str, Any], stages: list[str]
) -> TeacherRun:
    run = TeacherRun.objects.filter(
        teacher=teacher, dataset=dataset, split=split, prompt_config__fingerprint=prompt_config["fingerprint"]
    ).first()
    if run is None:
        run = TeacherRun.objects.create(
            teacher=teacher, dataset=dataset, split=split, prompt_config=prompt_config, stages=stages
        )
    elif set(stages) - set(run.stages):
        run.stages = sorted(set(run.stages) | set(stages))
        run.save(update_fields=["stages"])
    return run


def stored_texts(run: TeacherRun) -> dict[tuple[str, str, int | None], str]:
    rows = run.outputs.values_list("question__source_id", "kind", "choice_index", "text")
    return {(source_id, kind, choice): text for source_id, kind, choice, text in rows}


def teacher_outputs_store(*, run: TeacherRun, questions: dict[str, Question], records: list) -> int:
    """Store one generated batch, all of it or none of it."""
    with transaction.atomic():
        TeacherOutput.objects.bulk_create(
            TeacherOutput(
                run=run,
                question=questions[record.source_id],
                kind=record.kind,
                choice_index=record.choice_index,
                text=record.text,
                prompt=record.prompt_text,
                prompt_version=record.prompt_version,
                truncated=record.truncated,
                empty=record.empty,
                n_tokens=record.n_tokens,
                meta=record.meta,
            )
            for record in records
        )
    return len(records)


def teacher_generation_run(
    *,
    dataset_slug: str,
    split: str,
    stages: list[str],
    teacher_spec: str,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    shots: int | None = None,
    fewshot_path: str | None = None,
    prompt_style: str = "auto",
    max_new_tokens: int | None = None,
    progress: Progress,
) -> dict[str, Any]:
    """Generate the stages for the split's first `limit` questions; what the run stored before is skipped."""
    from distillation.ml import generation, prompts, teachers

    dataset = Dataset.objects.get(slug=dataset_slug)
    question_rows = list(Question.objects.filter(dataset=dataset, split=split).order_by("id")[:limit])
    if not question_rows:
        raise ValueError(f"no {split} questions in dataset {dataset_slug!r}: import them first")
    progress(0, None, stage="loading the teacher")
    backend = teachers.build_teacher(
        teacher_spec, openai_base_url=settings.OPENAI_BASE_URL, openai_api_key=settings.OPENAI_API_KEY or None
    )
    try:
        is_tiny = teacher_spec == "tiny"
        config = generation.prompt_config_for(backend, fewshot_path=fewshot_path, seed=seed, style=prompt_style)
        shots = shots if shots is not None else (TINY_TEACHER_SHOTS if is_tiny else None)
        if shots is not None:
            config = prompts.PromptConfig(
                fewshot=prompts.first_examples(config.fewshot, shots), chat=config.chat, seed=config.seed
            )
        max_new_tokens = max_new_tokens or (TINY_TEACHER_MAX_NEW_TOKENS if is_tiny else None)
        limits = dict(generation.DEFAULT_TOKEN_LIMITS)
        if max_new_tokens:
            limits = {kind: min(value, max_new_tokens) for kind, value in limits.items()}
        summary = prompt_config_summary(
            versions=prompts.stage_versions(config),
            seed=seed,
            chat=config.chat,
            fewshot_digest=config.fewshot.digest,
            max_new_tokens=max_new_tokens,
        )
        run = teacher_run_get_or_create(
            teacher=teacher_for_spec(teacher_spec),
            dataset=dataset,
            split=split,
            prompt_config=summary,
            stages=generation.plan_stages(stages),
        )
        by_source = {q.source_id: q for q in question_rows}
        result = generation.run_generation(
            [QuestionRecord(q.source_id, q.question, tuple(q.choices), q.answer) for q in question_rows],
            stages=stages,
            teacher=backend,
            prompts=config,
            store_batch=lambda records: teacher_outputs_store(run=run, questions=by_source, records=records),
            stored=stored_texts(run),
            progress=lambda done, total, stage: progress(done, total, stage=stage),
            should_stop=progress.should_stop,
            settings=generation.GenerationSettings(batch_size=batch_size, token_limits=limits),
        )
    finally:
        backend.close()
    return {
        "run_id": run.pk,
        "stages": result.stages,
        "generated": result.done,
        "skipped": result.skipped,
        "stopped": result.stopped,
        "by_stage": result.by_stage,
        "questions": len(question_rows),
    }


def teacher_generation_enqueue(*, params: dict[str, Any], user: Any = None):
    """Run teacher generation (the options of teacher_generation_run) in the background, after commit."""
    from distillation import jobs

    return enqueue_job(kind="teacher_generation", function=jobs.generate_teacher_data, params=params, user=user)
