"""Teacher generation through the command: all stages, resume after a real kill, replay, export and import."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from distillation.datafiles import read_questions
from distillation.models import TeacherOutput, TeacherRun
from distillation.services.imports import dataset_get_or_create, questions_import

ROOT = Path(__file__).resolve().parents[2]
TINY_16 = ["--teacher", "tiny", "--split", "train", "--limit", "16", "--batch-size", "16", "--max-new-tokens", "8"]
TINY_8 = ["--teacher", "tiny", "--split", "train", "--limit", "8", "--batch-size", "4", "--max-new-tokens", "8"]


def import_first_questions(data_dir: Path, split: str, n: int) -> None:
    records = read_questions(data_dir / "cqa" / f"{split}.jsonl")[:n]
    questions_import(dataset=dataset_get_or_create(slug="cqa"), split=split, records=records)


def call(*args) -> str:
    out = StringIO()
    call_command(*args, "--quiet", stdout=out)
    return out.getvalue()


def assert_one_output_per_key(run: TeacherRun) -> None:
    duplicates = run.outputs.values("question", "kind", "choice_index").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()


@pytest.mark.django_db
def test_tiny_teacher_makes_every_stage_with_its_prompt_version(data_dir):
    import_first_questions(data_dir, "train", 16)
    output = call("generate_teacher_data", *TINY_16)
    assert "128 outputs generated" in output
    run = TeacherRun.objects.get()
    counts = dict(run.outputs.values_list("kind").annotate(n=Count("id")))
    assert counts == {"rationale": 16, "critique": 16, "revision": 16, "counterfactual": 80}
    versions = set(run.outputs.values_list("kind", "prompt_version"))
    assert {kind for kind, _ in versions} == set(counts)
    assert all(version.startswith(f"{kind}/v") for kind, version in versions)
    critique = run.outputs.filter(kind="critique").first()
    assert "Question:" in critique.prompt, "the exact prompt is stored"
    assert sorted(
        run.outputs.filter(kind="counterfactual", question=critique.question).values_list("choice_index", flat=True)
    ) == [0, 1, 2, 3, 4]

    again = call("generate_teacher_data", *TINY_16)
    assert "0 outputs generated" in again and "128 already stored" in again
    assert TeacherOutput.objects.count() == 128


@pytest.mark.django_db
def test_the_tiny_teacher_runs_every_stage_with_its_default_settings(data_dir):
    """The offline teacher's own limits (one shot, 48 new tokens) fit its context at every stage."""
    import_first_questions(data_dir, "train", 4)
    command = ["generate_teacher_data", "--teacher", "tiny", "--split", "train"]
    command += ["--stages", "rationale,critique,revision,counterfactual", "--limit", "4", "--batch-size", "4"]
    assert "32 outputs generated" in call(*command)
    run = TeacherRun.objects.get()
    counts = dict(run.outputs.values_list("kind").annotate(n=Count("id")))
    assert counts == {"rationale": 4, "critique": 4, "revision": 4, "counterfactual": 20}
    again = call(*command)
    assert "0 outputs generated" in again and "32 already stored" in again
    assert TeacherOutput.objects.count() == 32


def test_the_longest_tiny_teacher_prompt_of_the_training_split_fits_its_context(data_dir):
    from distillation.ml import prompts
    from distillation.ml.teachers import TINY_TEACHER_CONTEXT
    from distillation.services.teacher import TINY_TEACHER_MAX_NEW_TOKENS, TINY_TEACHER_SHOTS

    config = prompts.PromptConfig(fewshot=prompts.first_examples(prompts.load_fewshot(), TINY_TEACHER_SHOTS))
    # The worst the tiny teacher can write: every byte token decoded to a three-byte replacement character.
    noise = "\ufffd" * TINY_TEACHER_MAX_NEW_TOKENS
    longest = 0
    for row in read_questions(data_dir / "cqa" / "train.jsonl"):
        source_id, question, choices, answer = row.source_id, row.question, row.choices, row.answer
        built = [
            config.rationale(source_id, question, choices, answer),
            config.critique(source_id, question, choices, answer, noise),
            config.revision(source_id, question, choices, answer, noise, noise),
            config.counterfactual(question, choices, 0),
        ]
        longest = max([longest, *(len(prompts.prompt_as_text(b.content).encode()) for b in built)])
    assert longest + TINY_TEACHER_MAX_NEW_TOKENS <= TINY_TEACHER_CONTEXT


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_mid_way_resumes_without_gaps_or_duplicates(data_dir):
    import_first_questions(data_dir, "train", 8)
    test_db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{test_db['USER']}@{test_db['HOST']}:{test_db['PORT']}/{test_db['NAME']}",
    }
    command = [sys.executable, "manage.py", "generate_teacher_data", *TINY_8, "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while TeacherOutput.objects.count() < 4:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the run stored nothing in time"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    stored_at_kill = TeacherOutput.objects.count()
    assert 0 < stored_at_kill < 64
    assert stored_at_kill % 4 == 0, "batches are stored whole"

    output = call("generate_teacher_data", *TINY_8)
    assert f"{stored_at_kill} already stored" in output
    run = TeacherRun.objects.get()
    assert run.outputs.count() == 64
    assert_one_output_per_key(run)


@pytest.mark.django_db
def test_replay_reproduces_the_shared_teacher_texts(data_dir):
    import_first_questions(data_dir, "validation", 100)
    teacher_file = data_dir / "teacher" / "cqa-llama2-13b-validation.jsonl.gz"
    call(
        "generate_teacher_data",
        "--teacher",
        f"replay:{teacher_file}",
        "--split",
        "validation",
        "--limit",
        "100",
        "--batch-size",
        "50",
    )
    with gzip.open(teacher_file, "rt", encoding="utf-8") as handle:
        expected = [json.loads(next(handle)) for _ in range(100)]
    stored = {
        (o.question.source_id, o.kind, o.choice_index): o.text for o in TeacherOutput.objects.select_related("question")
    }
    assert len(stored) == 100 * 8
    for row in expected:
        assert stored[(row["id"], "rationale", None)] == row["rationale"]
        assert stored[(row["id"], "critique", None)] == row["critique"]
        assert stored[(row["id"], "revision", None)] == row["revision"]
        for index, text in enumerate(row["counterfactual_rationales"]):
            assert stored[(row["id"], "counterfactual", index)] == text


@pytest.mark.django_db
def test_export_writes_what_import_reads(data_dir, tmp_path):
    import_first_questions(data_dir, "train", 4)
    call(
        "generate_teacher_data",
        "--teacher",
        "tiny",
        "--split",
        "train",
        "--limit",
        "4",
        "--stages",
        "rationale,counterfactual",
        "--max-new-tokens",
        "8",
    )
    exported = tmp_path / "tiny.jsonl.gz"
    call("export_teacher_outputs", "--out", str(exported))
    call("import_teacher_outputs", "--path", str(exported), "--teacher", "tiny-copy")
    original = TeacherRun.objects.get(teacher__name="tiny")
    copy = TeacherRun.objects.get(teacher__name="tiny-copy")
    as_set = lambda run: set(run.outputs.values_list("question_id", "kind", "choice_index", "text"))  # noqa: E731
    assert as_set(original) == as_set(copy)
    assert copy.outputs.count() == 4 * 6


@pytest.mark.django_db
def test_unknown_teacher_is_a_clear_error(data_dir):
    from django.core.management.base import CommandError

    import_first_questions(data_dir, "train", 2)
    with pytest.raises(CommandError, match="unknown kind 'gpt'"):
        call("generate_teacher_data", "--teacher", "gpt:x", "--split", "train", "--limit", "2")
