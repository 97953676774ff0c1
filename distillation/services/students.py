"""Student runs: create, train (resumably), evaluate on the dev split, and write explanations into studies.

Under ``torchrun`` or ``accelerate launch`` every process calls ``student_train`` and ``student_evaluate``
(they all train, and evaluation is sharded over them); only the main process writes to the database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from distillation.ml.distributed import is_main_process, wait_for_everyone
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
    "keep_checkpoints_after",
    "validation_fraction",
    "split_seed",
    "eval_every",
    "early_stop",
    "dropout",
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


def training_questions(run: StudentRun) -> list:
    """Every training-split question of the run's dataset, rationale or not (the validation split draws from these)."""
    from distillation.ml.tasks import Question as CoreQuestion

    if run.teacher_run is None:
        return []
    rows = Question.objects.filter(dataset=run.teacher_run.dataset, split=Split.TRAIN).order_by("id")
    return [CoreQuestion(q.source_id, q.question, tuple(q.choices), q.answer) for q in rows.iterator(chunk_size=2000)]


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


def truncation_summary(truncation: dict[str, dict[str, float]], max_tokens: tuple[int, int]) -> list[str]:
    """One line per task: the share of inputs and targets cut, with a warning above 5%."""
    from distillation.ml.training import TRUNCATION_WARNING_SHARE

    lines = []
    for kind, shares in truncation.items():
        line = (
            f"{kind}: {100 * shares['inputs_cut']:.1f}% of inputs cut at {max_tokens[0]} tokens, "
            f"{100 * shares['targets_cut']:.1f}% of targets at {max_tokens[1]}"
        )
        if max(shares["inputs_cut"], shares["targets_cut"]) > TRUNCATION_WARNING_SHARE:
            line += " - WARNING: more than 5% cut; those examples lose their end (raise --max-tokens?)"
        lines.append(line)
    return lines


def student_train(*, run: StudentRun, progress: Progress, limit: int | None = None) -> dict[str, Any]:
    """Train a run, resuming from its last checkpoint; a stopped run stays 'training' and can be resumed.

    Every process of a multi-process launch calls this; only the main one writes the run's row.
    """
    from distillation.ml.training import train_student

    main = is_main_process()
    examples = training_examples(run, limit=limit or run.hyperparameters.get("train_limit"))
    questions = training_questions(run) if not (limit or run.hyperparameters.get("train_limit")) else None
    config = training_config(run)
    if main:
        StudentRun.objects.filter(pk=run.pk).update(status=StudentRun.Status.TRAINING, updated_at=timezone.now())
        run.status = StudentRun.Status.TRAINING

    def report(step: int, total: int, stage: str, metrics: dict | None = None) -> None:
        metrics = metrics or {}
        if stage == "tokens cut":
            shares: dict[str, dict[str, float]] = {}
            for key, value in metrics.items():
                kind, part = key.split("_", 1)
                shares.setdefault(kind, {})[part] = value
            message = "; ".join(truncation_summary(shares, (config.max_input_tokens, config.max_target_tokens)))
            progress(step, total, stage=stage, message=message)
            return
        loss = metrics.get("loss")
        progress(step, total, stage=stage, message=f"loss {loss:.4f}" if loss is not None else "")

    result = train_student(
        config, examples, questions=questions, progress=report, should_stop=getattr(progress, "should_stop", None)
    )
    summary = {"completed": result.completed, "steps": result.steps_done, "resumed_from": result.resumed_from_step}
    if main:
        model_dir = result.model_dir if result.completed else None
        run.checkpoint_dir = str(model_dir or result.last_checkpoint or "")
        best = next((p for p in result.validation if p.step == result.best_step), None)
        run.metrics = {
            **run.metrics,
            "steps": result.steps_done,
            "train_questions": len(examples),
            "first_loss": result.loss_history[0] if result.loss_history else None,
            "last_loss": result.loss_history[-1] if result.loss_history else None,
            # The curves, also written to TensorBoard (logs/ in the run's folder) when tensorboard is installed.
            "loss_history": result.loss_history,
            "validation": [
                {"step": p.step, "loss": p.loss, "accuracy": p.accuracy, "task_losses": p.task_losses}
                for p in result.validation
            ],
            "best_step": result.best_step,
            "validation_accuracy": best.accuracy if best else None,
            "stopped_early": result.stopped_early,
            "truncation": result.truncation,
            "resumed_from": result.resumed_from_step,
        }
        if result.completed:
            run.status = StudentRun.Status.TRAINED
        run.save()
    wait_for_everyone()
    run.refresh_from_db()
    return summary


def _evaluation_questions(split: str, limit: int | None, dataset: Dataset | None = None):
    questions = Question.objects.filter(split=split).order_by("id")
    if dataset is not None:
        questions = questions.filter(dataset=dataset)
    return list(questions[:limit] if limit else questions)


def _storable(text: str) -> str:
    """Generated text without NUL bytes, which PostgreSQL text cannot hold (a byte-level student can emit them)."""
    return text.replace("\x00", "")


def _prediction_rows(run: StudentRun, questions: list[Question], records: list) -> list[Prediction]:
    by_source = {q.source_id: q for q in questions}
    return [
        Prediction(
            student_run=run,
            question=by_source[record.source_id],
            raw_answer=_storable(record.raw_answer),
            predicted_answer=record.predicted_answer or "",
            parsed_choice=record.parsed_choice,
            parse_status=record.parse_status,
            is_correct=bool(record.is_correct),
            choice_correct=bool(record.choice_correct),
            explanation=_storable(record.explanation),
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
    report = result.accuracy
    summary = {
        "accuracy": report.accuracy,
        "n": report.n_questions,
        "n_correct": report.n_correct,
        "choice_accuracy": report.choice_accuracy,
        "unparseable_rate": report.unparseable_rate,
    }
    if is_main_process():
        predictions_store(run=run, questions=questions, records=result.records)
        run.metrics = {
            **run.metrics,
            "accuracy": report.accuracy,  # exact match, the headline
            "n_correct": report.n_correct,
            "n_eval": report.n_questions,
            "choice_accuracy": report.choice_accuracy,  # letters and similar text accepted: a diagnostic
            "unparseable_rate": report.unparseable_rate,
            "eval_split": split,
        }
        run.status = StudentRun.Status.EVALUATED
        run.save(update_fields=["metrics", "status", "updated_at"])
    wait_for_everyone()
    return summary


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
                text=prediction.explanation or "(no explanation)",
                source="student_run",
                provenance={"student_run": run.pk, "generated_at": timezone.now().isoformat()},
                prediction=prediction,
                predicted_answer=prediction.predicted_answer,
            )
            counts[outcome] += 1
    return counts
