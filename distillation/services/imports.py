"""Writes of the distillation app: importing datasets and teacher outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction

from distillation.datafiles import (
    TeacherRecord,
    count_truncated_revisions,
    find_cqa_split_files,
    read_questions,
    read_teacher_records,
)
from distillation.ml.records import QuestionRecord
from distillation.ml.text import ends_mid_sentence
from distillation.models import Dataset, Question, Teacher, TeacherOutput, TeacherOutputKind, TeacherRun
from evalsite.errors import DataFileError
from evalsite.jobs import NO_PROGRESS, Progress

IMPORT_PROMPT_VERSION = "import"
BULK_BATCH = 2000


def dataset_get_or_create(*, slug: str, name: str | None = None) -> Dataset:
    dataset, _ = Dataset.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return dataset


def questions_import(
    *, dataset: Dataset, split: str, records: list[QuestionRecord], progress: Progress = NO_PROGRESS
) -> dict[str, int]:
    """Store the records not stored yet, all in one transaction. Returns counts of created and skipped."""
    existing = set(Question.objects.filter(dataset=dataset).values_list("source_id", flat=True))
    new = [record for record in records if record.source_id not in existing]
    stage = f"import {split}"
    progress(0, len(records), stage=stage)
    with transaction.atomic():
        for start in range(0, len(new), BULK_BATCH):
            chunk = new[start : start + BULK_BATCH]
            Question.objects.bulk_create(
                Question(
                    dataset=dataset,
                    split=split,
                    source_id=record.source_id,
                    question=record.question,
                    choices=list(record.choices),
                    answer=record.answer,
                    answer_index=record.answer_index,
                    extra=record.extra,
                )
                for record in chunk
            )
            progress(len(records) - len(new) + start + len(chunk), len(records), stage=stage)
    progress(len(records), len(records), stage=stage)
    return {"created": len(new), "skipped": len(records) - len(new)}


def cqa_import(*, path: str, dataset_slug: str = "cqa", progress: Progress = NO_PROGRESS) -> dict[str, dict[str, int]]:
    """Import CommonsenseQA splits from a folder. Every file is read and checked before anything is stored."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataFileError(directory, 0, "not a folder")
    files = find_cqa_split_files(directory)
    if not files:
        raise DataFileError(directory, 0, "holds no train.jsonl / validation.jsonl (or the official split files)")
    parsed = {split: read_questions(file) for split, file in files.items()}
    dataset = dataset_get_or_create(slug=dataset_slug, name="CommonsenseQA" if dataset_slug == "cqa" else None)
    with transaction.atomic():
        return {
            split: questions_import(dataset=dataset, split=split, records=records, progress=progress)
            for split, records in parsed.items()
        }


def _teacher_rows(record: TeacherRecord) -> list[tuple[str, int | None, str]]:
    rows: list[tuple[str, int | None, str]] = []
    for kind, text in (
        (TeacherOutputKind.RATIONALE, record.rationale),
        (TeacherOutputKind.NEGATIVE_RATIONALE, record.negative_rationale),
        (TeacherOutputKind.CRITIQUE, record.critique),
        (TeacherOutputKind.REVISION, record.revision),
    ):
        if text is not None:
            rows.append((kind, None, text))
    for index, text in enumerate(record.counterfactual_rationales):
        if text is not None:
            rows.append((TeacherOutputKind.COUNTERFACTUAL, index, text))
    return rows


def _check_questions_match(path: Path, records: list[TeacherRecord], questions: dict[str, Question]) -> None:
    for line, record in enumerate(records, start=1):
        question = questions.get(record.source_id)
        if question is None:
            raise DataFileError(path, line, f"question {record.source_id} is not imported (run import_cqa first)")
        if record.question is not None and list(record.question.choices) != question.choices:
            raise DataFileError(path, line, f"choices of {record.source_id} differ from the imported question")


def teacher_outputs_import(
    *,
    path: str,
    teacher_name: str,
    dataset_slug: str = "cqa",
    progress: Progress = NO_PROGRESS,
) -> dict[str, Any]:
    """Import a teacher-output file, or a ``save_to_disk`` folder in the paper's layout; stored outputs are skipped."""
    from distillation.paperrepo import is_saved_dataset, read_saved_teacher_records

    file = Path(path)
    records = read_saved_teacher_records(file) if is_saved_dataset(file) else read_teacher_records(file)
    try:
        dataset = Dataset.objects.get(slug=dataset_slug)
    except Dataset.DoesNotExist as exc:
        raise DataFileError(file, 0, f"dataset '{dataset_slug}' is not imported (run import_cqa first)") from exc
    ids = [record.source_id for record in records]
    questions = {
        q.source_id: q
        for q in Question.objects.filter(dataset=dataset, source_id__in=ids).only("id", "source_id", "choices", "split")
    }
    _check_questions_match(file, records, questions)
    splits = sorted({questions[i].split for i in ids})

    with transaction.atomic():
        teacher, _ = Teacher.objects.get_or_create(
            name=teacher_name, defaults={"backend": Teacher.Backend.IMPORT, "model_id": file.name}
        )
        run, _ = TeacherRun.objects.get_or_create(
            teacher=teacher,
            dataset=dataset,
            split=splits[0] if len(splits) == 1 else "",
            prompt_config__prompt_version=IMPORT_PROMPT_VERSION,
            defaults={
                "prompt_config": {"prompt_version": IMPORT_PROMPT_VERSION},
                "source_file": file.name,
                "stages": ["rationale", "negative_rationale", "critique", "revision", "counterfactual"],
            },
        )
        stored = set(TeacherOutput.objects.filter(run=run).values_list("question__source_id", "kind", "choice_index"))
        pending: list[TeacherOutput] = []
        created = 0
        stage = f"import {file.name}"
        progress(0, len(records), stage=stage)
        for done, record in enumerate(records, start=1):
            question = questions[record.source_id]
            for kind, choice_index, text in _teacher_rows(record):
                if (record.source_id, kind, choice_index) in stored:
                    continue
                pending.append(
                    TeacherOutput(
                        run=run,
                        question=question,
                        kind=kind,
                        choice_index=choice_index,
                        text=text,
                        prompt_version=IMPORT_PROMPT_VERSION,
                        truncated=ends_mid_sentence(text),
                        empty=not text.strip(),
                    )
                )
            if len(pending) >= BULK_BATCH:
                TeacherOutput.objects.bulk_create(pending)
                created += len(pending)
                pending = []
                progress(done, len(records), stage=stage)
        TeacherOutput.objects.bulk_create(pending)
        created += len(pending)
        progress(len(records), len(records), stage=stage)
    return {
        "teacher": teacher.name,
        "run_id": run.pk,
        "questions": len(records),
        "created": created,
        "truncated_revisions": count_truncated_revisions(records),
        "splits": splits,
    }
