"""Creating studies from a configuration, and adding explanations from files or student runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.csvfiles import ExplanationRow, matching_key, read_explanation_csv
from annotations.models import Condition, Construct, Explanation, Item, Study
from annotations.presets import DEFAULT_CONSENT, DEFAULT_INSTRUCTIONS, construct_specs
from distillation.models import Question
from evalsite.errors import DataFileError
from evalsite.jobs import NO_PROGRESS, Progress

STUDY_FIELDS = {
    "title",
    "description",
    "mode",
    "status",
    "explanations_per_annotator",
    "ratings_per_explanation",
    "attention_check_positions",
    "consent_text",
    "instructions",
    "demographics_questions",
    "show_correct_answer",
    "ask_preference",
    "time_limit_minutes",
    "assignment_timeout_minutes",
    "min_seconds_per_screen",
    "completion_code",
    "failed_attention_code",
}


@transaction.atomic
def study_create(*, config: dict[str, Any]) -> Study:
    """Create a study, its constructs and conditions from a configuration mapping (as create_study reads)."""
    unknown = set(config) - STUDY_FIELDS - {"slug", "constructs", "scale_size", "conditions"}
    if unknown:
        raise ValidationError(f"unknown study settings: {', '.join(sorted(unknown))}")
    if Study.objects.filter(slug=config.get("slug")).exists():
        raise ValidationError(f"a study with slug {config.get('slug')!r} exists already")
    fields = {key: value for key, value in config.items() if key in STUDY_FIELDS}
    fields.setdefault("title", config.get("slug", ""))
    fields.setdefault("consent_text", DEFAULT_CONSENT)
    fields.setdefault("instructions", DEFAULT_INSTRUCTIONS)
    study = Study(slug=config.get("slug", ""), **fields)
    study.full_clean()
    study.save()
    try:
        specs = construct_specs(config.get("constructs", "default"), int(config.get("scale_size", 5)))
    except (ValueError, KeyError) as exc:
        raise ValidationError(f"constructs: {exc}") from exc
    for spec in specs:
        construct = Construct(study=study, **spec)
        construct.full_clean()
        construct.save()
    for position, entry in enumerate(config.get("conditions", [])):
        entry = {"label": entry} if isinstance(entry, str) else entry
        condition_get_or_create(
            study=study, label=entry["label"], description=entry.get("description", ""), position=position
        )
    _check_attention_positions(study)
    return study


def _check_attention_positions(study: Study) -> None:
    positions = study.attention_check_positions or []
    if not all(isinstance(p, int) and p >= 1 for p in positions):
        raise ValidationError("attention_check_positions must be screen numbers counted from 1")


def condition_get_or_create(
    *, study: Study, label: str, description: str = "", student_run=None, position: int | None = None
) -> Condition:
    condition = Condition.objects.filter(study=study, label=label).first()
    if condition is not None:
        if student_run is not None and condition.student_run_id != student_run.pk:
            condition.student_run = student_run
            condition.save(update_fields=["student_run"])
        return condition
    if position is None:
        position = Condition.objects.filter(study=study).count()
    condition = Condition(study=study, label=label, description=description, student_run=student_run, position=position)
    condition.full_clean()
    condition.save()
    return condition


def item_get_or_create(
    *, study: Study, key: str, question_text: str, choices: list[str], answer: str, question: Question | None = None
) -> Item:
    item, created = Item.objects.get_or_create(
        study=study,
        source_id=key,
        defaults={"question_text": question_text, "choices": choices, "answer": answer, "question": question},
    )
    if not created and question is not None and item.question_id is None:
        item.question = question
        item.save(update_fields=["question"])
    return item


@transaction.atomic
def explanation_set_text(
    *,
    item: Item,
    condition: Condition,
    text: str,
    source: str,
    provenance: dict[str, Any],
    prediction=None,
    predicted_answer: str = "",
) -> tuple[Explanation, str]:
    """Make `text` the current explanation of (item, condition). Returns it and what happened.

    An explanation that annotators have seen or rated is never changed: the new text becomes a new version,
    shown from now on, and the old one keeps its ratings.
    """
    current = Explanation.objects.select_for_update().filter(item=item, condition=condition, is_current=True).first()
    if current is not None and current.text == text:
        return current, "unchanged"
    if current is not None and not _has_been_shown(current):
        current.text, current.provenance, current.source = text, provenance, source
        current.prediction, current.predicted_answer = prediction, predicted_answer
        current.full_clean()
        current.save()
        return current, "updated"
    version = 1
    if current is not None:
        version = current.version + 1
        current.is_current = False
        current.save(update_fields=["is_current"])
    explanation = Explanation(
        item=item,
        condition=condition,
        text=text,
        version=version,
        supersedes=current,
        source=source,
        provenance=provenance,
        prediction=prediction,
        predicted_answer=predicted_answer,
    )
    explanation.full_clean()
    explanation.save()
    return explanation, "created" if current is None else "new_version"


def _has_been_shown(explanation: Explanation) -> bool:
    return explanation.ratings.exists() or explanation.assignments.exists() or explanation.second_assignments.exists()


class StoredQuestions:
    """The stored question each row of a file stands for, matched with case and whitespace ignored."""

    def __init__(self, rows: list[ExplanationRow]) -> None:
        self._with_choices: dict[tuple[str, tuple[str, ...]], Question] = {}
        self._by_text: dict[str, list[Question]] = {}
        texts = {row.question for row in rows if row.question}
        exact = list(Question.objects.filter(question__in=texts))
        self._add(exact)
        if any(self._lookup(row) is None for row in rows if row.question):
            # Some texts differ from the stored ones in spacing or case: compare every stored question.
            wanted = {matching_key(text) for text in texts}
            known = {question.pk for question in exact}
            self._add(
                question
                for question in Question.objects.exclude(pk__in=known).iterator(chunk_size=2000)
                if matching_key(question.question) in wanted
            )

    def _add(self, questions) -> None:
        for question in questions:
            key = matching_key(question.question)
            self._with_choices[(key, tuple(matching_key(choice) for choice in question.choices))] = question
            self._by_text.setdefault(key, []).append(question)

    def _lookup(self, row: ExplanationRow) -> Question | None:
        key = matching_key(row.question)
        if row.choices:
            return self._with_choices.get((key, tuple(matching_key(choice) for choice in row.choices)))
        candidates = self._by_text.get(key, [])
        return candidates[0] if len(candidates) == 1 else None

    def get(self, row: ExplanationRow) -> Question | None:
        return self._lookup(row) if row.question else None

    def why_unmatched(self, row: ExplanationRow) -> str:
        if not row.question:
            return "no question text"
        if not row.choices and len(self._by_text.get(matching_key(row.question), [])) > 1:
            return "several stored questions have this text and the file gives no choices"
        if matching_key(row.question) in self._by_text:
            return "a stored question has this text but other choices"
        return "no stored question has this text"


def _refuse_unmatched(path: Path, rows: list[ExplanationRow], questions: StoredQuestions) -> None:
    """Stop an import that would leave items without a stored question, naming the first ten."""
    unmatched = [row for row in rows if questions.get(row) is None]
    if not unmatched:
        return
    listed = "; ".join(
        f"line {row.line} ({questions.why_unmatched(row)}): {row.question[:70]!r}" for row in unmatched[:10]
    )
    more = f"; and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
    raise DataFileError(
        path,
        unmatched[0].line,
        f"{len(unmatched)} of {len(rows)} rows match no stored question (case and spacing ignored): "
        f"{listed}{more}. Import the questions first (import_cqa), or pass --allow-unmatched to keep "
        "these items with the file's own text and answer.",
    )


def _items_for(study: Study, rows: list[ExplanationRow], questions: StoredQuestions) -> dict[str, Item]:
    """The study's item for each row, creating the missing ones in bulk."""
    items = {item.source_id: item for item in Item.objects.filter(study=study)}
    by_row: dict[str, Item] = {}
    missing: dict[str, Item] = {}
    for row in rows:
        question = questions.get(row)
        key = question.source_id if question else row.item_key
        item = items.get(key) or missing.get(key)
        if item is None:
            item = Item(
                study=study,
                source_id=key,
                question=question,
                question_text=question.question if question else row.question,
                choices=list(question.choices) if question else list(row.choices),
                answer=question.answer if question else row.answer,
            )
            missing[key] = item
        by_row[row.item_key] = item
    Item.objects.bulk_create(missing.values())
    return by_row


def explanations_import_csv(
    *,
    study: Study,
    condition_label: str,
    path: str,
    item_column: str,
    text_column: str,
    question_column: str | None = None,
    answer_column: str | None = None,
    prediction_column: str | None = None,
    only_source_ids: set[str] | None = None,
    allow_unmatched: bool = False,
    progress: Progress = NO_PROGRESS,
) -> dict[str, int]:
    """Import one condition's explanations from a CSV, all or nothing.

    `only_source_ids` keeps just the rows whose question is one of those stored questions (a sample).
    Rows that match no stored question stop the import unless `allow_unmatched`.
    """
    file = Path(path)
    rows = read_explanation_csv(
        file,
        item_column=item_column,
        text_column=text_column,
        question_column=question_column,
        answer_column=answer_column,
        prediction_column=prediction_column,
    )
    questions = StoredQuestions(rows)
    if only_source_ids is not None:
        rows = [row for row in rows if (match := questions.get(row)) is not None and match.source_id in only_source_ids]
    elif not allow_unmatched:
        _refuse_unmatched(file, rows, questions)
    counts = {"created": 0, "updated": 0, "new_version": 0, "unchanged": 0}
    stage = f"import {file.name} as {condition_label}"
    with transaction.atomic():
        condition = condition_get_or_create(study=study, label=condition_label)
        items = _items_for(study, rows, questions)
        current = {e.item_id: e for e in Explanation.objects.filter(condition=condition, is_current=True)}
        fresh: list[Explanation] = []
        for done, row in enumerate(rows, start=1):
            item = items[row.item_key]
            provenance = {"file": file.name, "line": row.line, "column": text_column}
            if item.pk not in current:
                fresh.append(
                    Explanation(
                        item=item,
                        condition=condition,
                        text=row.text,
                        source=Explanation.Source.FILE,
                        provenance=provenance,
                        predicted_answer=row.predicted_answer,
                    )
                )
                counts["created"] += 1
            elif current[item.pk].text == row.text:
                counts["unchanged"] += 1
            else:
                _, outcome = explanation_set_text(
                    item=item,
                    condition=condition,
                    text=row.text,
                    source=Explanation.Source.FILE,
                    provenance=provenance,
                    predicted_answer=row.predicted_answer,
                )
                counts[outcome] += 1
            if done % 500 == 0 or done == len(rows):
                progress(done, len(rows), stage=stage)
        Explanation.objects.bulk_create(fresh)
    return counts


def study_open(*, study: Study) -> Study:
    problems = study_readiness_problems(study)
    if problems:
        raise ValidationError("; ".join(problems))
    study.status = Study.Status.OPEN
    study.save(update_fields=["status"])
    return study


def study_readiness_problems(study: Study) -> list[str]:
    problems = []
    if not study.constructs.exists():
        problems.append("the study has no constructs")
    conditions = list(study.conditions.all())
    if not conditions:
        problems.append("the study has no conditions")
    if study.mode == Study.Mode.PAIR and len(conditions) < 2:
        problems.append("pair mode needs at least two conditions")
    empty = [c.label for c in conditions if not c.explanations.filter(is_current=True).exists()]
    if empty:
        problems.append(f"conditions without explanations: {', '.join(empty)}")
    return problems
