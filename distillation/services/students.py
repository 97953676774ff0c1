"""Student runs: create, train (resumably), evaluate on the dev split, and write explanations into studies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from distillation.ml.text import first_line
from distillation.models import (
    Dataset,
    Prediction,
    Question,
    Split,
    StudentRun,
    TeacherOutput,
    TeacherOutputKind,
    TeacherRun,
    TrainingData,
)

Progress = Callable[..., None]
# What a study shows where the student wrote nothing; the text-quality measures count it as empty.
NO_EXPLANATION_TEXT = "(no explanation)"

# Hyper-parameters a run may set; the rest keep the training core's defaults (the paper's).
TRAINING_OPTIONS = {
    "max_steps",
    "batch_size",
    "learning_rate",
    "grad_accum_steps",
    "max_input_tokens",
    "max_target_tokens",
    "checkpoint_every",
    "keep_checkpoints",
    "validation_fraction",
    "precision",
    "train_limit",  # only the first N training questions (demos and tests); not a TrainingConfig field
}


class TrainingDataMissing(ValueError):
    """The teacher outputs a student needs are not in the database."""


def student_run_create(
    *,
    base_checkpoint: str,
    method: str,
    training_data: str,
    seed: int = 0,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 0.5,
    hyperparameters: dict[str, Any] | None = None,
    teacher_run: TeacherRun | None = None,
    model_size: str = "",
    name: str = "",
) -> StudentRun:
    unknown = set(hyperparameters or {}) - TRAINING_OPTIONS
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
    run = StudentRun(
        name=name,
        base_checkpoint=base_checkpoint,
        method=method,
        training_data=training_data,
        seed=seed,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        hyperparameters=hyperparameters or {},
        teacher_run=teacher_run or default_teacher_run(),
        model_size=model_size or ("tiny" if base_checkpoint.startswith("tiny") else ""),
        architecture=StudentRun.Architecture.CAUSAL if base_checkpoint == "tiny-causal" else "",
    )
    run.full_clean()
    run.save()
    return run


def default_teacher_run(dataset_slug: str = "cqa", teacher_name: str | None = None) -> TeacherRun | None:
    """The newest teacher run over the training split that has rationales (optionally of one teacher)."""
    runs = TeacherRun.objects.filter(dataset__slug=dataset_slug, split=Split.TRAIN)
    if teacher_name:
        runs = runs.filter(teacher__name=teacher_name)
    runs = runs.filter(outputs__kind=TeacherOutputKind.RATIONALE).distinct().order_by("-created_at")
    return runs.first()


def training_examples(run: StudentRun, *, limit: int | None = None) -> list:
    """The training questions with the teacher's texts (first lines), in a stable order."""
    from distillation.ml.tasks import TeacherExample

    if run.teacher_run is None:
        raise TrainingDataMissing("no teacher run with training rationales: import or generate teacher outputs first")
    wanted_kind = (
        TeacherOutputKind.REVISION if run.training_data == TrainingData.REVISED else TeacherOutputKind.RATIONALE
    )
    texts: dict[int, dict] = {}
    outputs = TeacherOutput.objects.filter(
        run=run.teacher_run, kind__in=[wanted_kind, TeacherOutputKind.COUNTERFACTUAL]
    ).values_list("question_id", "kind", "choice_index", "text")
    for question_id, kind, choice, text in outputs.iterator(chunk_size=5000):
        entry = texts.setdefault(question_id, {"cf": {}})
        if kind == TeacherOutputKind.COUNTERFACTUAL:
            entry["cf"][choice] = first_line(text)
        else:
            entry["rationale"] = first_line(text)
    questions = Question.objects.filter(pk__in=texts.keys()).order_by("id")
    examples = []
    for question in questions.iterator(chunk_size=2000):
        entry = texts[question.pk]
        if not entry.get("rationale"):
            continue  # the teacher left this one empty (5 revisions of the paper's data are missing)
        counterfactuals = tuple(entry["cf"].get(i, "") for i in range(len(question.choices)))
        examples.append(
            TeacherExample(
                question.source_id,
                question.question,
                tuple(question.choices),
                question.answer,
                entry["rationale"],
                counterfactuals,
            )
        )
        if limit and len(examples) >= limit:
            break
    if not examples:
        raise TrainingDataMissing(f"teacher run {run.teacher_run_id} has no {wanted_kind} texts")
    return examples


def student_output_dir(run: StudentRun) -> Path:
    """The run's checkpoints; the creation time in the name keeps a reset database from reusing old ones."""
    return Path(settings.EVALSITE_ARTIFACTS_DIR) / "students" / f"run-{run.pk}-{run.created_at:%Y%m%dT%H%M%S%f}"


def training_config(run: StudentRun):
    from distillation.ml.training import TrainingConfig

    return TrainingConfig(
        student=run.base_checkpoint,
        method=run.method,
        alpha=run.alpha,
        beta=run.beta,
        gamma=run.gamma,
        seed=run.seed,
        output_dir=str(student_output_dir(run)),
        **{key: value for key, value in run.hyperparameters.items() if key != "train_limit"},
    )


def student_train(*, run: StudentRun, progress: Progress, limit: int | None = None) -> dict[str, Any]:
    """Train a run, resuming from its last checkpoint; a stopped run stays 'training' and can be resumed."""
    from distillation.ml.training import train_student

    examples = training_examples(run, limit=limit or run.hyperparameters.get("train_limit"))
    StudentRun.objects.filter(pk=run.pk).update(status=StudentRun.Status.TRAINING, updated_at=timezone.now())

    def report(step: int, total: int, stage: str, metrics: dict | None = None) -> None:
        loss = (metrics or {}).get("loss")
        progress(step, total, stage=stage, message=f"loss {loss:.4f}" if loss is not None else "")

    result = train_student(
        training_config(run), examples, progress=report, should_stop=getattr(progress, "should_stop", None)
    )
    run.checkpoint_dir = str(result.final_model_dir or result.last_checkpoint or "")
    run.metrics = {
        **run.metrics,
        "steps": result.steps_done,
        "train_questions": len(examples),
        "first_loss": result.loss_history[0] if result.loss_history else None,
        "last_loss": result.loss_history[-1] if result.loss_history else None,
        "validation": [{"step": p.step, "loss": p.loss} for p in result.validation],
    }
    if result.completed:
        run.status = StudentRun.Status.TRAINED
    run.save()
    return {"completed": result.completed, "steps": result.steps_done, "resumed_from": result.resumed_from_step}


def _evaluation_questions(split: str, limit: int | None, dataset: Dataset | None = None):
    questions = Question.objects.filter(split=split).order_by("id")
    if dataset is not None:
        questions = questions.filter(dataset=dataset)
    return list(questions[:limit] if limit else questions)


def _prediction_rows(run: StudentRun, questions: list[Question], records: list) -> list[Prediction]:
    by_source = {q.source_id: q for q in questions}
    return [
        Prediction(
            student_run=run,
            question=by_source[record.source_id],
            raw_answer=record.raw_answer,
            predicted_answer=record.predicted_answer or "",
            parsed_choice=record.parsed_choice,
            parse_status=record.parse_status,
            is_correct=bool(record.is_correct),
            explanation=record.explanation,
        )
        for record in records
    ]


def predictions_store(*, run: StudentRun, questions: list[Question], records: list) -> list[Prediction]:
    """Replace the run's predictions for these questions (explanations in studies keep their own copies)."""
    with transaction.atomic():
        Prediction.objects.filter(student_run=run, question__in=questions).delete()
        return Prediction.objects.bulk_create(_prediction_rows(run, questions, records))


def student_evaluate(
    *,
    run: StudentRun,
    progress: Progress,
    split: str = Split.VALIDATION,
    limit: int | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    from distillation.ml.inference import InferenceConfig, evaluate_student

    if not run.checkpoint_dir or run.status not in (StudentRun.Status.TRAINED, StudentRun.Status.EVALUATED):
        raise ValueError(f"student run {run.pk} is not trained yet")
    questions = _evaluation_questions(split, limit, run.teacher_run.dataset if run.teacher_run else None)
    stage = f"evaluating on {split}"
    result = evaluate_student(
        run.checkpoint_dir,
        questions,
        config=InferenceConfig(
            batch_size=batch_size,
            max_input_tokens=run.hyperparameters.get("max_input_tokens", 300),
            max_explanation_tokens=run.hyperparameters.get("max_target_tokens", 300),
        ),
        progress=lambda done, total, *rest: progress(done, total, stage=stage),
    )
    predictions_store(run=run, questions=questions, records=result.records)
    run.metrics = {
        **run.metrics,
        "text_quality": _text_quality_of(run=run, questions=questions, records=result.records),
        "accuracy": result.accuracy.accuracy,
        "n_eval": result.accuracy.n_questions,
        "unparseable_rate": result.accuracy.unparseable_rate,
        "eval_split": split,
    }
    run.status = StudentRun.Status.EVALUATED
    run.save(update_fields=["metrics", "status", "updated_at"])
    return {
        "accuracy": result.accuracy.accuracy,
        "n": result.accuracy.n_questions,
        "unparseable_rate": result.accuracy.unparseable_rate,
    }


def _text_quality_of(*, run: StudentRun, questions: list[Question], records: list) -> dict[str, Any]:
    """The text-quality measures of a run's explanations (see ``distillation.ml.text_quality``)."""
    from distillation.ml.text_quality import ExplainedQuestion, text_quality
    from distillation.selectors import corpus_vocabulary

    by_source = {q.source_id: q for q in questions}
    items = [
        ExplainedQuestion(
            record.explanation,
            by_source[record.source_id].question,
            by_source[record.source_id].choices,
            record.is_correct,
        )
        for record in records
    ]
    return text_quality(items, corpus_vocabulary(teacher_run=run.teacher_run)).as_dict()


def explanations_generate(
    *,
    run: StudentRun,
    study,
    condition_label: str,
    progress: Progress,
    split: str = Split.VALIDATION,
    limit: int | None = None,
    source_ids: list[str] | None = None,
    batch_size: int = 16,
) -> dict[str, int]:
    """Generate the run's explanations and make them the current ones of a study condition.

    Explanations that annotators have seen keep their ratings: new text becomes a new version.
    """
    from annotations.services.studies import condition_get_or_create, explanation_set_text, item_get_or_create
    from distillation.ml.inference import InferenceConfig, generate_explanations

    if not run.checkpoint_dir:
        raise ValueError(f"student run {run.pk} has no trained model")
    if source_ids is not None:
        questions = list(Question.objects.filter(source_id__in=source_ids).order_by("id"))
    else:
        questions = _evaluation_questions(split, limit, run.teacher_run.dataset if run.teacher_run else None)
    records = generate_explanations(
        run.checkpoint_dir,
        questions,
        config=InferenceConfig(
            batch_size=batch_size,
            max_input_tokens=run.hyperparameters.get("max_input_tokens", 300),
            max_explanation_tokens=run.hyperparameters.get("max_target_tokens", 300),
        ),
        progress=lambda done, total, *rest: progress(done, total, stage="generating explanations"),
    )
    counts = {"created": 0, "updated": 0, "new_version": 0, "unchanged": 0}
    with transaction.atomic():
        predictions = {p.question_id: p for p in predictions_store(run=run, questions=questions, records=records)}
        condition = condition_get_or_create(study=study, label=condition_label, student_run=run)
        for question in questions:
            prediction = predictions[question.pk]
            item = item_get_or_create(
                study=study,
                key=question.source_id,
                question_text=question.question,
                choices=list(question.choices),
                answer=question.answer,
                question=question,
            )
            _, outcome = explanation_set_text(
                item=item,
                condition=condition,
                text=prediction.explanation or NO_EXPLANATION_TEXT,
                source="student_run",
                provenance={"student_run": run.pk, "generated_at": timezone.now().isoformat()},
                prediction=prediction,
                predicted_answer=prediction.predicted_answer,
            )
            counts[outcome] += 1
    return counts
