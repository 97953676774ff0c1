"""Reading explanation CSVs (such as a student's outputs) into plain rows, with file:line errors."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from evalsite.errors import DataFileError

# "[predict] Question: ... Choices: (a) x (b) y ..." as the students' inputs are written.
_TASK_PREFIX = re.compile(r"^\s*\[[^\]]+\]\s*")
_QUESTION_AND_CHOICES = re.compile(r"Question:\s*(?P<question>.*?)\s*Choices:\s*(?P<choices>\(a\).*)$", re.S)
_CHOICE = re.compile(r"\(([a-j])\)\s*(.*?)\s*(?=\([a-j]\)|$)", re.S)
_ANSWER_PREFIX = re.compile(r"^\s*(so\s+)?the answer is\s*:?\s*", re.I)


@dataclass(frozen=True)
class ExplanationRow:
    line: int
    item_key: str
    text: str
    question: str
    choices: tuple[str, ...]
    answer: str
    predicted_answer: str


def parse_question_input(text: str) -> tuple[str, tuple[str, ...]] | None:
    """Split a student input into its question and choices; None when it is not in that form."""
    match = _QUESTION_AND_CHOICES.search(_TASK_PREFIX.sub("", text))
    if not match:
        return None
    choices = tuple(choice.strip() for _, choice in _CHOICE.findall(match.group("choices")))
    return match.group("question").strip(), choices


def strip_answer_prefix(text: str) -> str:
    return _ANSWER_PREFIX.sub("", text or "").strip().rstrip(".").strip()


def matching_key(text: str) -> str:
    """The form in which a file's question text is compared with a stored question's.

    Case and whitespace are ignored: exported student inputs differ from CommonsenseQA in both
    ("did not,match" against "did not ,match", "semen?" against "semen ?").
    """
    return "".join(text.split()).casefold()


def item_key_for(text: str) -> str:
    """A stable key for an item given by free text (the same question gets the same key in every file)."""
    parsed = parse_question_input(text)
    basis = f"{parsed[0]}|{'|'.join(parsed[1])}" if parsed else text.strip()
    return "q-" + hashlib.sha1(basis.encode("utf-8")).hexdigest()[:16]


def read_explanation_csv(
    path: Path,
    *,
    item_column: str,
    text_column: str,
    question_column: str | None = None,
    answer_column: str | None = None,
    prediction_column: str | None = None,
) -> list[ExplanationRow]:
    """Read every row, or raise on the first bad one; the whole file is checked before anything is stored."""
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise DataFileError(path, 0, f"cannot open: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for name in filter(None, [item_column, text_column, question_column, answer_column, prediction_column]):
            if name not in columns:
                raise DataFileError(path, 1, f"no column {name!r}; the columns are {columns}")
        rows: list[ExplanationRow] = []
        seen: dict[str, int] = {}
        for record in reader:
            line = reader.line_num
            rows.append(
                _row(record, line, path, item_column, text_column, question_column, answer_column, prediction_column)
            )
            key = rows[-1].item_key
            if key in seen:
                raise DataFileError(path, line, f"item {key} repeats line {seen[key]}")
            seen[key] = line
    if not rows:
        raise DataFileError(path, 1, "no rows")
    return rows


def _row(record, line, path, item_column, text_column, question_column, answer_column, prediction_column):
    item_value = (record.get(item_column) or "").strip()
    text = (record.get(text_column) or "").strip()
    if not item_value:
        raise DataFileError(path, line, f"empty {item_column!r}")
    if not text:
        raise DataFileError(path, line, f"empty explanation in {text_column!r}")
    question_source = record.get(question_column) if question_column else item_value
    parsed = parse_question_input(question_source or "")
    question, choices = parsed if parsed else ((question_source or "").strip(), ())
    is_free_text_key = parse_question_input(item_value) is not None
    return ExplanationRow(
        line=line,
        item_key=item_key_for(item_value) if is_free_text_key else item_value,
        text=text,
        question=question,
        choices=choices,
        answer=strip_answer_prefix(record.get(answer_column, "")) if answer_column else "",
        predicted_answer=strip_answer_prefix(record.get(prediction_column, "")) if prediction_column else "",
    )
