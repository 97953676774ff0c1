"""A checkout of the paper's public repository (DanielHendriks/llm-distillation) as a data folder.

Its layout: ``datasets/cqa/{train,validation}.json`` (JSON lines, our question format), the teacher's outputs in
``llm_outputs/consolidated/cqa-llama-{train,test}/shard_*`` (``datasets`` ``save_to_disk`` folders; ``test`` is
the dev split) and ``misc/statistical_analysis/{study,experiment}.csv``. The reference data folder's layout
(``cqa/``, ``teacher/``, ``students/``, ``paper_study/``) is recognised too, so callers ask one function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillation.datafiles import TeacherRecord, parse_question
from distillation.ml.records import QuestionRecord
from evalsite.errors import DataFileError

PAPER_CQA_DIR = Path("datasets") / "cqa"
PAPER_TEACHER_DIRS = {
    "train": Path("llm_outputs") / "consolidated" / "cqa-llama-train",
    "validation": Path("llm_outputs") / "consolidated" / "cqa-llama-test",
}
PAPER_STATISTICS_DIR = Path("misc") / "statistical_analysis"
REFERENCE_TEACHER_FILES = {
    "train": Path("teacher") / "cqa-llama2-13b-train.jsonl.gz",
    "validation": Path("teacher") / "cqa-llama2-13b-validation.jsonl.gz",
}
# The paper's field names -> ours; counterfactual_prompt_answer_{k}_rationale is the rationale for choice k.
PAPER_TEXT_FIELDS = {
    "rationale": "few_shot_positive_rationale",
    "negative_rationale": "few_shot_negative_rationale",
    "critique": "few_shot_critique",
    "revision": "few_shot_revision",
}
PAPER_COUNTERFACTUAL_FIELD = "counterfactual_prompt_answer_{}_rationale"


@dataclass(frozen=True)
class DataFolder:
    """Where a data folder keeps each thing; ``teacher`` maps split -> a file or a ``save_to_disk`` folder."""

    root: Path
    layout: str  # "reference" or "paper"
    cqa_dir: Path
    teacher: dict[str, Path] = field(default_factory=dict)
    students_dir: Path | None = None
    statistics_dir: Path | None = None


def data_folder(root: Path | str) -> DataFolder:
    """Recognise the reference layout or a checkout of the paper's repository; a clear error otherwise."""
    root = Path(root)
    if (root / "cqa").is_dir():
        return DataFolder(
            root,
            "reference",
            root / "cqa",
            {split: root / path for split, path in REFERENCE_TEACHER_FILES.items()},
            root / "students",
            root / "paper_study",
        )
    if (root / PAPER_CQA_DIR).is_dir():
        return DataFolder(
            root,
            "paper",
            root / PAPER_CQA_DIR,
            {split: root / path for split, path in PAPER_TEACHER_DIRS.items()},
            None,
            root / PAPER_STATISTICS_DIR,
        )
    raise DataFileError(
        root,
        0,
        "not a data folder: expected cqa/ (the reference data) or datasets/cqa/ (a checkout of the paper's "
        "repository, github.com/DanielHendriks/llm-distillation)",
    )


def is_saved_dataset(path: Path | str) -> bool:
    """A ``save_to_disk`` folder: one data set (state.json) or a folder of shards that are."""
    path = Path(path)
    return path.is_dir() and ((path / "state.json").is_file() or bool(_shards(path)))


def _shards(path: Path) -> list[Path]:
    shards = [p for p in path.glob("shard_*") if (p / "state.json").is_file()]
    return sorted(shards, key=lambda p: int(p.name.removeprefix("shard_")) if p.name[6:].isdigit() else -1)


def iter_saved_rows(path: Path | str):
    """(row number, row dict) over every shard in order, numbered from 1 across shards (for error messages)."""
    from datasets import load_from_disk

    path = Path(path)
    parts = [path] if (path / "state.json").is_file() else _shards(path)
    if not parts:
        raise DataFileError(path, 0, "not a save_to_disk data set (no state.json, no shard_*/state.json)")
    number = 0
    for part in parts:
        try:
            dataset = load_from_disk(str(part))
        except (OSError, ValueError, FileNotFoundError) as exc:
            raise DataFileError(part, 0, f"cannot load the data set: {exc}") from exc
        if not hasattr(dataset, "features"):
            raise DataFileError(part, 0, "a dictionary of data sets, expected one data set")
        for row in dataset:
            number += 1
            yield number, row


def parse_paper_teacher_row(row: dict[str, Any], path: Path, line: int) -> TeacherRecord:
    """One row of the paper's consolidated outputs as a teacher record (missing fields are None)."""
    question: QuestionRecord = parse_question(
        {key: row.get(key) for key in ("id", "question", "choices", "answer")}, path, line
    )
    texts = {}
    for ours, theirs in PAPER_TEXT_FIELDS.items():
        value = row.get(theirs)
        if value is not None and not isinstance(value, str):
            raise DataFileError(path, line, f"field '{theirs}' must be a string or null")
        texts[ours] = value
    counterfactuals = []
    for number in range(1, len(question.choices) + 1):
        value = row.get(PAPER_COUNTERFACTUAL_FIELD.format(number))
        if value is not None and not isinstance(value, str):
            raise DataFileError(path, line, f"field '{PAPER_COUNTERFACTUAL_FIELD.format(number)}' must be a string")
        counterfactuals.append(value)
    if all(value is None for value in counterfactuals):
        counterfactuals = []
    return TeacherRecord(
        source_id=question.source_id,
        counterfactual_rationales=tuple(counterfactuals),
        question=question,
        **texts,
    )


def read_saved_teacher_records(path: Path | str) -> list[TeacherRecord]:
    """Every row of a ``save_to_disk`` teacher data set (all shards), refusing repeated ids."""
    path = Path(path)
    records: list[TeacherRecord] = []
    seen: dict[str, int] = {}
    for number, row in iter_saved_rows(path):
        record = parse_paper_teacher_row(row, path, number)
        if record.source_id in seen:
            raise DataFileError(path, number, f"id {record.source_id} repeats row {seen[record.source_id]}")
        seen[record.source_id] = number
        records.append(record)
    return records
