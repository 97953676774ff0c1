"""Importing CommonsenseQA and teacher outputs: counts, idempotence, and all-or-nothing on a bad line."""

from __future__ import annotations

import gzip
import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from distillation.models import Dataset, Question, Teacher, TeacherOutput, TeacherRun
from evalsite.models import Job

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, "--quiet", stdout=out)
    return out.getvalue()


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def head_lines(path: Path, n: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


@pytest.fixture(scope="module")
def imported_cqa(django_db_setup, django_db_blocker, data_dir):
    """The full CommonsenseQA import, once for the module (it is what every other import needs)."""
    with django_db_blocker.unblock():
        first = run("import_cqa", "--path", str(data_dir / "cqa"))
        yield first
        # Made outside any test's transaction, so removed by hand for the modules that follow.
        TeacherOutput.objects.all().delete()
        TeacherRun.objects.all().delete()
        Teacher.objects.all().delete()
        Question.objects.all().delete()
        Dataset.objects.all().delete()
        Job.objects.all().delete()


def test_cqa_import_stores_every_question_once(imported_cqa, data_dir):
    assert "train: 9741 questions stored" in imported_cqa
    assert "validation: 1221 questions stored" in imported_cqa
    assert Question.objects.filter(split="train").count() == 9741
    assert Question.objects.filter(split="validation").count() == 1221

    second = run("import_cqa", "--path", str(data_dir / "cqa"))
    assert "train: 0 questions stored, 9741 already there" in second
    assert Question.objects.count() == 10962

    question = Question.objects.get(source_id="075e483d21c29a511267ef62bedc0461")
    assert question.choices[question.answer_index] == question.answer == "ignore"


def test_teacher_outputs_tie_to_all_questions_and_report_truncation(imported_cqa, data_dir):
    outputs = {}
    for split in ("train", "validation"):
        outputs[split] = run(
            "import_teacher_outputs",
            "--path",
            str(data_dir / "teacher" / f"cqa-llama2-13b-{split}.jsonl.gz"),
            "--teacher",
            "llama2-13b",
        )
    assert TeacherOutput.objects.values("question").distinct().count() == 10962
    assert "44 revisions look truncated" in outputs["train"]
    assert TeacherOutput.objects.filter(kind="counterfactual").count() == 5 * 10962
    assert TeacherOutput.objects.filter(kind="critique").count() == 1221  # the train split has none
    first_count = TeacherOutput.objects.count()

    again = run(
        "import_teacher_outputs",
        "--path",
        str(data_dir / "teacher" / "cqa-llama2-13b-validation.jsonl.gz"),
        "--teacher",
        "llama2-13b",
    )
    assert "0 outputs stored" in again
    assert TeacherOutput.objects.count() == first_count
    assert TeacherRun.objects.count() == 2
    truncated = TeacherOutput.objects.filter(kind="revision", truncated=True, question__split="train").count()
    assert truncated == 44


def test_a_corrupt_teacher_line_names_the_line_and_stores_nothing(imported_cqa, data_dir, tmp_path):
    lines = head_lines(data_dir / "teacher" / "cqa-llama2-13b-validation.jsonl.gz", 30)
    lines[17] = lines[17][: len(lines[17]) // 2]  # cut mid-object, as a torn download would
    broken = write_jsonl(tmp_path / "broken.jsonl.gz", lines, gz=True)
    before = TeacherOutput.objects.count()

    with pytest.raises(CommandError, match=r"broken\.jsonl\.gz:18: not valid JSON"):
        run("import_teacher_outputs", "--path", str(broken), "--teacher", "broken-teacher")

    assert TeacherOutput.objects.count() == before
    assert not TeacherRun.objects.filter(teacher__name="broken-teacher").exists()


def test_a_teacher_line_for_an_unknown_question_fails_whole(imported_cqa, data_dir, tmp_path):
    lines = head_lines(data_dir / "teacher" / "cqa-llama2-13b-validation.jsonl.gz", 5)
    row = json.loads(lines[3])
    row["id"] = "not-a-question"
    lines[3] = json.dumps(row)
    file = write_jsonl(tmp_path / "unknown.jsonl", lines)
    before = TeacherOutput.objects.count()
    with pytest.raises(CommandError, match=r"unknown\.jsonl:4: question not-a-question is not imported"):
        run("import_teacher_outputs", "--path", str(file), "--teacher", "t")
    assert TeacherOutput.objects.count() == before


def test_a_corrupt_cqa_line_keeps_the_database_as_it_was(tmp_path, data_dir):
    folder = tmp_path / "cqa"
    folder.mkdir()
    shutil.copy(data_dir / "cqa" / "validation.jsonl", folder / "validation.jsonl")
    Question.objects.all().delete()
    before = 0
    lines = head_lines(data_dir / "cqa" / "train.jsonl", 40)
    row = json.loads(lines[9])
    row["answer"] = "not one of the choices"
    lines[9] = json.dumps(row)
    write_jsonl(folder / "train.jsonl", lines)

    with pytest.raises(CommandError, match=r"train\.jsonl:10: answer 'not one of the choices' is not one"):
        run("import_cqa", "--path", str(folder))
    assert Question.objects.count() == before  # not even the valid validation file is kept


def test_official_commonsenseqa_format_is_read(tmp_path):
    folder = tmp_path / "official"
    folder.mkdir()
    official = {
        "answerKey": "B",
        "id": "q-official-1",
        "question": {
            "question_concept": "river",
            "choices": [
                {"label": "A", "text": "desert"},
                {"label": "B", "text": "valley"},
                {"label": "C", "text": "cloud"},
                {"label": "D", "text": "oven"},
                {"label": "E", "text": "attic"},
            ],
            "stem": "Where does a river usually run?",
        },
    }
    write_jsonl(folder / "train_rand_split.jsonl", [official])
    output = run("import_cqa", "--path", str(folder))
    assert "train: 1 questions stored" in output
    question = Question.objects.get(source_id="q-official-1")
    assert (question.question, question.answer, question.answer_index) == (
        "Where does a river usually run?",
        "valley",
        1,
    )
    assert question.extra == {"question_concept": "river"}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="not a folder"):
        run("import_cqa", "--path", str(tmp_path / "nowhere"))


def test_the_demo_students_corpus_from_the_database_is_the_teacher_files_rows(imported_cqa, data_dir, tmp_path):
    """What the demo's base model learns from: each imported rationale and revision with its question's answer and
    the rationales for its wrong choices, exactly as the teacher file has them."""
    from distillation.ml.demo_student import CorpusDocument, corpus_documents
    from distillation.ml.tasks import load_teacher_examples, wrong_choice_indices
    from distillation.ml.text import first_line
    from distillation.services.demo_student import demo_corpus

    lines = head_lines(data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz", 6)
    file = write_jsonl(tmp_path / "six.jsonl", lines)
    run("import_teacher_outputs", "--path", str(file), "--teacher", "six")
    expected = []
    for unrevised, revised in zip(load_teacher_examples(file), load_teacher_examples(file, revised=True), strict=True):
        wrong = tuple((i, first_line(unrevised.counterfactual_rationales[i])) for i in wrong_choice_indices(unrevised))
        for e in (unrevised, revised):
            expected.append(CorpusDocument(e.question, e.choices, first_line(e.rationale), e.answer, wrong))
    corpus = demo_corpus(teacher_run=TeacherRun.objects.get(teacher__name="six"))
    assert sorted(corpus, key=repr) == sorted(expected, key=repr)
    from_file = corpus_documents(load_teacher_examples(file) + load_teacher_examples(file, revised=True))
    assert sorted(from_file, key=repr) == sorted(expected, key=repr), "the file's documents are the database's"
    assert all(document.counterfactuals for document in corpus), "each has the wrong choices' rationales"
