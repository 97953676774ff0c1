"""Student runs: create, train (resumably), evaluate on the dev split, store predictions; the one status writer.

Under ``torchrun`` or ``accelerate launch`` every process calls ``student_train`` and ``student_evaluate``
(they all train, and evaluation is sharded over them); only the main process writes to the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from distillation.ml.distributed import is_main_process, wait_for_everyone
from distillation.ml.text import first_line
from distillation.models import (
    Dataset,
    Prediction,
    PredictionSet,
    Question,
    Split,
    StudentRun,
    TeacherOutput,
    TeacherOutputKind,
    TeacherRun,
    TrainingData,
)
from evalsite.jobs import JobCancelled, Progress, enqueue_job
from evalsite.models import Job

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


TRAINING_JOB_KIND = "student_training"


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


def student_run_set_status(*, run: StudentRun, status: str) -> None:
    """The one writer of a run's status (its other fields are saved without it, so none overwrites it)."""
    StudentRun.objects.filter(pk=run.pk).update(status=status, updated_at=timezone.now())
    run.status = status


def active_training_job(run: StudentRun) -> Job | None:
    """A queued or running training job of the run: two at once would write the same checkpoints. (A job whose
    worker died stays "running" until ``check_jobs`` marks it failed.)"""
    jobs = Job.objects.filter(
        target_type=ContentType.objects.get_for_model(StudentRun), target_id=str(run.pk), kind=TRAINING_JOB_KIND
    )
    return jobs.filter(status__in=(Job.Status.QUEUED, Job.Status.RUNNING)).order_by("-created_at").first()


def student_training_enqueue(*, run: StudentRun, eval_limit: int | None = None, user: Any = None):
    """Train (or resume) and evaluate a run in the background, once the surrounding transaction commits."""
    from distillation import jobs

    running = active_training_job(run)
    if running is not None:
        raise ValueError(
            f"student run {run.pk} is already being trained by job {running.pk}: wait for it to end or cancel it "
            "(if its worker died, `manage.py check_jobs` marks it failed)"
        )
    return enqueue_job(
        kind=TRAINING_JOB_KIND,
        function=jobs.train_student,
        params={"run_id": run.pk, "eval_limit": eval_limit},
        target=run,
        user=user,
    )


def trained_steps(run: StudentRun) -> int:
    return int((run.metrics or {}).get("steps") or 0)


def student_run_extend(*, run: StudentRun, max_steps: int) -> None:
    """Raise a finished run's step count, so that its next training goes on from its last weights to
    ``max_steps`` (the one setting of a run that changes after it is created)."""
    finished = (StudentRun.Status.TRAINED, StudentRun.Status.EVALUATED)
    if run.status not in finished or not run.checkpoint_dir:
        raise ValueError(f"student run {run.pk} has not finished training: train (or resume) it first")
    done = trained_steps(run)
    if max_steps <= done:
        raise ValueError(f"student run {run.pk} has trained {done} steps: to train longer, ask for more than {done}")
    with transaction.atomic():
        locked = StudentRun.objects.select_for_update().get(pk=run.pk)
        locked.hyperparameters = {**locked.hyperparameters, "max_steps": max_steps}
        locked.save(update_fields=["hyperparameters", "updated_at"])
    run.hyperparameters = locked.hyperparameters


def student_run_train_longer_enqueue(*, run: StudentRun, max_steps: int, user: Any = None):
    """Train a finished run on to ``max_steps`` in the background, then evaluate it again (a new prediction set;
    the explanations already in studies keep theirs until regenerated)."""
    with transaction.atomic():  # a refused start (another training job of the run) leaves the step count as it was
        student_run_extend(run=run, max_steps=max_steps)
        return student_training_enqueue(run=run, user=user)


def student_train_and_evaluate(
    *,
    run: StudentRun,
    progress: Progress,
    evaluate: bool = True,
    eval_split: str = Split.VALIDATION,
    eval_limit: int | None = None,
) -> dict[str, Any]:
    """Train (resuming from the last checkpoint), then evaluate; an error marks the run failed, a stop does not."""
    try:
        trained = student_train(run=run, progress=progress)
        if not trained["completed"]:
            raise JobCancelled(f"stopped at step {trained['steps']}; a retry resumes from the last checkpoint")
        result = {"training": trained}
        if evaluate:
            result["evaluation"] = student_evaluate(run=run, progress=progress, split=eval_split, limit=eval_limit)
        return result
    except JobCancelled:
        raise
    except Exception:
        if is_main_process():
            student_run_set_status(run=run, status=StudentRun.Status.FAILED)
        raise


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
        student_run_set_status(run=run, status=StudentRun.Status.TRAINING)

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

    result = train_student(config, examples, questions=questions, progress=report, should_stop=progress.should_stop)
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
            # The curves, also written to TensorBoard (logs/ in the run's folder).
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
            "extensions": result.extensions,
        }
        run.save(update_fields=["checkpoint_dir", "metrics", "updated_at"])
        if result.completed:
            student_run_set_status(run=run, status=StudentRun.Status.TRAINED)
    wait_for_everyone()
    run.refresh_from_db()
    return summary


def evaluation_questions(split: str, limit: int | None, dataset: Dataset | None = None) -> list[Question]:
    """The first `limit` questions of a split (of the run's dataset when given), in a stable order."""
    questions = Question.objects.filter(split=split).order_by("id")
    if dataset is not None:
        questions = questions.filter(dataset=dataset)
    return list(questions[:limit] if limit else questions)


def _storable(text: str) -> str:
    """Generated text without NUL bytes, which PostgreSQL text cannot hold (a byte-level student can emit them)."""
    return text.replace("\x00", "")


def _prediction_rows(prediction_set: PredictionSet, questions: list[Question], records: list) -> list[Prediction]:
    by_source = {q.source_id: q for q in questions}
    return [
        Prediction(
            student_run_id=prediction_set.run_id,
            prediction_set=prediction_set,
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


def teacher_prompt_version(run: StudentRun) -> str:
    """The teacher prompt templates behind a student's training data, e.g. `rationale=v1;revision=v1`."""
    if run.teacher_run is None:
        return ""
    config = run.teacher_run.prompt_config or {}
    versions = config.get("versions") or {}
    if versions:
        return ";".join(f"{stage}={version}" for stage, version in sorted(versions.items()))
    return str(config.get("prompt_version", ""))


def predictions_store(
    *, run: StudentRun, questions: list[Question], records: list, kind: str, split: str = ""
) -> list[Prediction]:
    """Append the records as the run's next prediction set; earlier sets (and the explanations and ratings
    that point at them) are never touched. The set names the checkpoint, step and formats behind them."""
    from distillation.ml.tasks import TASK_FORMAT_VERSION

    with transaction.atomic():
        # The run row is the lock: two jobs of one run number their sets one after the other.
        StudentRun.objects.select_for_update().filter(pk=run.pk).first()
        last = PredictionSet.objects.filter(run=run).aggregate(last=Max("number"))["last"] or 0
        steps = run.metrics.get("steps")
        prediction_set = PredictionSet(
            run=run,
            number=last + 1,
            kind=kind,
            checkpoint_path=run.checkpoint_dir,
            checkpoint_step=steps if isinstance(steps, int) and steps >= 0 else None,
            split=split,
            task_format=TASK_FORMAT_VERSION,
            prompt_version=teacher_prompt_version(run),
        )
        prediction_set.full_clean()
        prediction_set.save()
        return Prediction.objects.bulk_create(_prediction_rows(prediction_set, questions, records))


def latest_prediction_set(run: StudentRun, *, kind: str | None = None) -> PredictionSet | None:
    sets = PredictionSet.objects.filter(run=run)
    if kind:
        sets = sets.filter(kind=kind)
    return sets.order_by("-number").first()


def inference_config(run: StudentRun, *, batch_size: int = 16):
    """How to run a trained student: its training's token limits, in batches."""
    from distillation.ml.inference import InferenceConfig

    return InferenceConfig(
        batch_size=batch_size,
        max_input_tokens=run.hyperparameters.get("max_input_tokens", 300),
        max_explanation_tokens=run.hyperparameters.get("max_target_tokens", 300),
    )


def student_evaluate(
    *,
    run: StudentRun,
    progress: Progress,
    split: str = Split.VALIDATION,
    limit: int | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    from distillation.ml.inference import evaluate_student

    if not run.checkpoint_dir or run.status not in (StudentRun.Status.TRAINED, StudentRun.Status.EVALUATED):
        raise ValueError(f"student run {run.pk} is not trained yet")
    questions = evaluation_questions(split, limit, run.teacher_run.dataset if run.teacher_run else None)
    stage = f"evaluating on {split}"
    result = evaluate_student(
        run.checkpoint_dir,
        questions,
        config=inference_config(run, batch_size=batch_size),
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
        predictions_store(
            run=run, questions=questions, records=result.records, kind=PredictionSet.Kind.EVALUATION, split=split
        )
        run.metrics = {
            **run.metrics,
            "text_quality": _text_quality_of(run=run, questions=questions, records=result.records),
            "accuracy": report.accuracy,  # exact match, the headline
            "n_correct": report.n_correct,
            "n_eval": report.n_questions,
            "choice_accuracy": report.choice_accuracy,  # letters and similar text accepted: a diagnostic
            "unparseable_rate": report.unparseable_rate,
            "eval_split": split,
        }
        run.save(update_fields=["metrics", "updated_at"])
        student_run_set_status(run=run, status=StudentRun.Status.EVALUATED)
    wait_for_everyone()
    return summary


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


def student_evaluation_enqueue(*, run: StudentRun, limit: int | None = None, user: Any = None):
    """Evaluate a trained run again in the background (a new prediction set), once the transaction commits."""
    from distillation import jobs

    if not run.checkpoint_dir or run.status not in (StudentRun.Status.TRAINED, StudentRun.Status.EVALUATED):
        raise ValueError(f"student run {run.pk} is not trained yet: train it first")
    return enqueue_job(
        kind="student_evaluation",
        function=jobs.evaluate_student,
        params={"run_id": run.pk, "limit": limit},
        target=run,
        user=user,
    )
