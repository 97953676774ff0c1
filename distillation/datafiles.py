"""Reading dataset and teacher-output files into plain records, with file:line errors for bad lines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillation.ml.records import QuestionRecord, read_json_lines
from distillation.ml.text import ends_mid_sentence
from evalsite.errors import DataFileError

CHOICE_LABELS = "ABCDEFGHIJ"

# Split file names we recognise in a CommonsenseQA folder: ours first, then the official release's, then the
# paper repository's (datasets/cqa/*.json, JSON lines in our format).
CQA_SPLIT_FILES = {
    "train": ("train.jsonl", "train_rand_split.jsonl", "train.json"),
    "validation": ("validation.jsonl", "dev_rand_split.jsonl", "validation.json"),
}


@dataclass(frozen=True)
class TeacherRecord:
    source_id: str
    rationale: str | None
    negative_rationale: str | None
    critique: str | None
    revision: str | None
    counterfactual_rationales: tuple[str | None, ...]
    question: QuestionRecord | None


def _require_text(obj: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataFileError(path, line, f"field '{key}' must be a non-empty string")
    return value


def parse_question(obj: dict[str, Any], path: Path, line: int) -> QuestionRecord:
    """Accept our flat format (question, choices, answer) and the official one (stem, labelled choices)."""
    if isinstance(obj.get("question"), dict):
        return _parse_official_question(obj, path, line)
    source_id = _require_text(obj, "id", path, line)
    question = _require_text(obj, "question", path, line)
    choices = obj.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise DataFileError(path, line, "field 'choices' must be a list of at least two non-empty strings")
    answer = _require_text(obj, "answer", path, line)
    if answer not in choices:
        raise DataFileError(path, line, f"answer {answer!r} is not one of the choices")
    known = {"id", "question", "choices", "answer"}
    extra = {k: v for k, v in obj.items() if k not in known}
    return QuestionRecord(source_id, question, tuple(choices), answer, extra)


def _parse_official_question(obj: dict[str, Any], path: Path, line: int) -> QuestionRecord:
    source_id = _require_text(obj, "id", path, line)
    body = obj["question"]
    stem = _require_text(body, "stem", path, line)
    raw_choices = body.get("choices")
    if not isinstance(raw_choices, list) or len(raw_choices) < 2:
        raise DataFileError(path, line, "field 'question.choices' must be a list of labelled choices")
    try:
        ordered = sorted(raw_choices, key=lambda c: c["label"])
        labels = [c["label"] for c in ordered]
        texts = [c["text"] for c in ordered]
    except (KeyError, TypeError) as exc:
        raise DataFileError(path, line, "each choice needs a 'label' and a 'text'") from exc
    key = obj.get("answerKey")
    if key not in labels:
        raise DataFileError(path, line, f"answerKey {key!r} is not one of the labels {labels}")
    extra = {"question_concept": body.get("question_concept")} if body.get("question_concept") else {}
    return QuestionRecord(source_id, stem, tuple(texts), texts[labels.index(key)], extra)


def _read_unique(path: Path, parse: Callable[[dict[str, Any], Path, int], Any]) -> list:
    """Parse every line; raise on the first bad one and on an id that repeats."""
    records = []
    seen: dict[str, int] = {}
    for line, obj in read_json_lines(path):
        record = parse(obj, path, line)
        if record.source_id in seen:
            raise DataFileError(path, line, f"id {record.source_id} repeats line {seen[record.source_id]}")
        seen[record.source_id] = line
        records.append(record)
    return records


def read_questions(path: Path) -> list[QuestionRecord]:
    return _read_unique(path, parse_question)


def find_cqa_split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, names in CQA_SPLIT_FILES.items():
        for name in names:
            if (directory / name).is_file():
                found[split] = directory / name
                break
    return found


def _optional_text(obj: dict[str, Any], key: str, path: Path, line: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataFileError(path, line, f"field '{key}' must be a string or null")
    return value


def parse_teacher_record(obj: dict[str, Any], path: Path, line: int) -> TeacherRecord:
    source_id = _require_text(obj, "id", path, line)
    counterfactuals = obj.get("counterfactual_rationales")
    if counterfactuals is None:
        counterfactuals = []
    if not isinstance(counterfactuals, list) or not all(c is None or isinstance(c, str) for c in counterfactuals):
        raise DataFileError(path, line, "field 'counterfactual_rationales' must be a list of strings")
    question = None
    if "question" in obj and "choices" in obj and "answer" in obj:
        question = parse_question({k: obj[k] for k in ("id", "question", "choices", "answer")}, path, line)
        if counterfactuals and len(counterfactuals) != len(question.choices):
            raise DataFileError(
                path,
                line,
                f"{len(counterfactuals)} counterfactual rationales for {len(question.choices)} choices",
            )
    return TeacherRecord(
        source_id=source_id,
        rationale=_optional_text(obj, "rationale", path, line),
        negative_rationale=_optional_text(obj, "negative_rationale", path, line),
        critique=_optional_text(obj, "critique", path, line),
        revision=_optional_text(obj, "revision", path, line),
        counterfactual_rationales=tuple(counterfactuals),
        question=question,
    )


def read_teacher_records(path: Path) -> list[TeacherRecord]:
    return _read_unique(path, parse_teacher_record)


def count_truncated_revisions(records: list[TeacherRecord]) -> int:
    return sum(1 for record in records if record.revision and ends_mid_sentence(record.revision))
