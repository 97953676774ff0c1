"""The generation core: stage planning, batches to a store callback, resume, cancellation, replay."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from distillation.ml.generation import (
    GenerationSettings,
    OutputRecord,
    plan_stages,
    prompt_config_for,
    run_generation,
)
from distillation.ml.prompts import PromptConfig, load_fewshot
from distillation.ml.records import QuestionRecord
from distillation.ml.teachers import (
    FINISH_LENGTH,
    FINISH_STOP,
    HFTeacher,
    ReplayTeacher,
    TeacherBackend,
    TeacherError,
    TeacherRequest,
    TeacherResult,
)
from distillation.ml.tiny import TinySize

ALL_STAGES = ["rationale", "critique", "revision", "counterfactual"]
# Small limits keep the tiny model quick; the prompts still carry a real few-shot example.
SMALL_LIMITS = {"rationale": 6, "critique": 6, "revision": 6, "counterfactual": 4}

ONE_EXAMPLE = {
    "examples": [
        {
            "question": "What do you use to unlock a door?",
            "choices": ["key", "spoon", "cloud", "song", "shoe"],
            "answer": "key",
            "rationale": "A key turns a lock.",
            "negative_rationale": "A key.",
            "critique": "No reason given.",
            "revision": "A key fits and turns the lock; the rest cannot.",
        }
    ]
}


def read_questions(data_dir: Path, count: int) -> list[QuestionRecord]:
    with (data_dir / "cqa" / "validation.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in itertools.islice(lines, count)]
    return [QuestionRecord(row["id"], row["question"], tuple(row["choices"]), row["answer"]) for row in rows]


@pytest.fixture(scope="module")
def prompt_config(tmp_path_factory: pytest.TempPathFactory) -> PromptConfig:
    path = tmp_path_factory.mktemp("fewshot") / "one.json"
    path.write_text(json.dumps(ONE_EXAMPLE), encoding="utf-8")
    return PromptConfig(fewshot=load_fewshot(path), seed=11)


@pytest.fixture(scope="module")
def questions(data_dir: Path) -> list[QuestionRecord]:
    return read_questions(data_dir, 16)


@pytest.fixture(scope="module")
def tiny_teacher() -> HFTeacher:
    # Smaller still than the default tiny size: these prompts are long in bytes and the CPUs are shared.
    return HFTeacher.tiny(seed=0, size=TinySize(d_model=32, n_layers=1, n_heads=2, d_ff=64), max_batch_size=16)


SETTINGS = GenerationSettings(batch_size=16, token_limits=SMALL_LIMITS)


@pytest.fixture(scope="module")
def full_run(questions, tiny_teacher, prompt_config):
    batches: list[list[OutputRecord]] = []
    progress: list[tuple[int, int, str]] = []
    summary = run_generation(
        questions,
        stages=ALL_STAGES,
        teacher=tiny_teacher,
        prompts=prompt_config,
        store_batch=batches.append,
        progress=lambda done, total, stage: progress.append((done, total, stage)),
        settings=SETTINGS,
    )
    return summary, batches, progress


def records_of(batches: list[list[OutputRecord]]) -> list[OutputRecord]:
    return [record for batch in batches for record in batch]


def test_all_four_stages_with_the_tiny_teacher(full_run, questions):
    summary, batches, progress = full_run
    records = records_of(batches)
    counts = {kind: sum(record.kind == kind for record in records) for kind in ALL_STAGES}
    assert counts == {"rationale": 16, "critique": 16, "revision": 16, "counterfactual": 80}
    assert len({record.key for record in records}) == 128
    assert (summary.total, summary.done, summary.skipped, summary.stopped) == (128, 128, 0, False)
    assert [stage for _, _, stage in progress] == [batch[0].kind for batch in batches]
    assert [kind for kind, _ in itertools.groupby(stage for _, _, stage in progress)] == ALL_STAGES
    assert progress[-1] == (128, 128, "counterfactual")
    for record in records:
        assert record.prompt_version.startswith(f"{record.kind}/v1+fewshot=")
        assert record.n_tokens is not None and record.n_tokens <= SMALL_LIMITS[record.kind]
        assert record.meta["teacher"] == "tiny" and "\n" not in record.text
    choices = {record.choice_index for record in records if record.kind == "counterfactual"}
    assert choices == {0, 1, 2, 3, 4}


def test_later_stages_are_prompted_with_earlier_texts(full_run):
    records = {record.key: record for record in records_of(full_run[1])}
    for (source_id, kind, _), record in records.items():
        if kind == "critique":
            rationale = records[(source_id, "rationale", None)].text
            assert f"Explanation: {rationale}\nCritique request:" in record.prompt_text
        if kind == "revision":
            critique = records[(source_id, "critique", None)].text
            assert f"Critique: {critique}\nRevision request:" in record.prompt_text
            assert record.meta["request_pair"] == records[(source_id, "critique", None)].meta["request_pair"]
        if kind == "rationale":
            assert len(record.meta["qualities"]) == 2


def test_resume_generates_only_what_is_not_stored(full_run, questions, tiny_teacher, prompt_config):
    records = records_of(full_run[1])
    stored_records = records[::2]
    stored = {record.key: record.text for record in stored_records}
    batches: list[list[OutputRecord]] = []
    summary = run_generation(
        questions,
        stages=ALL_STAGES,
        teacher=tiny_teacher,
        prompts=prompt_config,
        store_batch=batches.append,
        stored=stored,
        settings=SETTINGS,
    )
    resumed = records_of(batches)
    assert {record.key for record in resumed} == {record.key for record in records} - set(stored)
    assert (summary.total, summary.done, summary.skipped) == (64, 64, 64)
    # Greedy and prompted from the same earlier texts, the resumed outputs equal the ones of the full run.
    by_key = {record.key: record for record in records}
    assert all(record == by_key[record.key] for record in resumed)


def test_should_stop_halts_between_batches(questions, tiny_teacher, prompt_config):
    batches: list[list[OutputRecord]] = []
    summary = run_generation(
        questions,
        stages=["counterfactual"],
        teacher=tiny_teacher,
        prompts=prompt_config,
        store_batch=batches.append,
        should_stop=lambda: len(batches) >= 2,
        settings=SETTINGS,
    )
    assert [len(batch) for batch in batches] == [16, 16]
    assert (summary.done, summary.total, summary.stopped) == (32, 80, True)


def test_prompt_style_follows_the_teacher_unless_forced(tiny_teacher):
    assert not prompt_config_for(tiny_teacher).chat
    assert prompt_config_for(tiny_teacher, style="chat").chat
    chat_teacher = ScriptedTeacher()
    chat_teacher.prompt_style = "chat"
    assert prompt_config_for(chat_teacher, seed=4).chat
    assert not prompt_config_for(chat_teacher, style="plain").chat
    with pytest.raises(ValueError, match="prompt style"):
        prompt_config_for(chat_teacher, style="json")


def test_plan_adds_dependencies_in_order():
    assert plan_stages(["revision"]) == ["rationale", "critique", "revision"]
    assert plan_stages(["counterfactual", "critique"]) == ["rationale", "critique", "counterfactual"]
    assert plan_stages(["counterfactual"]) == ["counterfactual"]
    with pytest.raises(ValueError, match="unknown stages"):
        plan_stages(["summary"])


class ScriptedTeacher(TeacherBackend):
    """Answers each request with a text made from its key; fails on demand."""

    name = "scripted"

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[TeacherRequest]] = []
        self.fail_on_call = fail_on_call

    def generate(
        self, requests: Sequence[TeacherRequest], *, max_new_tokens: int, temperature: float = 0.0, stop=()
    ) -> list[TeacherResult]:
        self.calls.append(list(requests))
        if len(self.calls) == self.fail_on_call:
            raise TeacherError("http://teacher: HTTP 503 after 6 attempt(s)")
        raw = [f" Explanation: {r.key.kind} of {r.key.source_id}\nQuestion: more" for r in requests]
        return [TeacherResult(text, 9, FINISH_LENGTH, text) for text in raw]


QUESTIONS = [QuestionRecord(f"q{i}", f"Question {i}?", ("a", "b", "c", "d", "e"), "b") for i in range(5)]


def test_stored_dependencies_feed_the_requested_stage(prompt_config):
    stored = {("q0", "rationale", None): "stored rationale", ("q0", "critique", None): "stored critique"}
    teacher = ScriptedTeacher()
    batches: list[list[OutputRecord]] = []
    run_generation(
        QUESTIONS[:1],
        stages=["revision"],
        teacher=teacher,
        prompts=prompt_config,
        store_batch=batches.append,
        stored=stored,
    )
    [[revision]] = batches
    assert revision.kind == "revision"
    assert "Explanation: stored rationale\n" in revision.prompt_text
    assert "Critique: stored critique\n" in revision.prompt_text
    # The completion is cleaned: label, second line and new question gone; cut, so not truncated.
    assert revision.text == "revision of q0"
    assert not revision.truncated and revision.meta["finish_reason"] == FINISH_LENGTH


def test_a_failing_batch_stores_nothing_and_stops_the_run(prompt_config):
    teacher = ScriptedTeacher(fail_on_call=2)
    batches: list[list[OutputRecord]] = []
    with pytest.raises(TeacherError, match="HTTP 503"):
        run_generation(
            QUESTIONS,
            stages=["rationale"],
            teacher=teacher,
            prompts=prompt_config,
            store_batch=batches.append,
            settings=GenerationSettings(batch_size=2),
        )
    assert [[record.source_id for record in batch] for batch in batches] == [["q0", "q1"]]


def test_chat_prompts_reach_the_teacher_as_messages():
    teacher = ScriptedTeacher()
    batches: list[list[OutputRecord]] = []
    run_generation(
        QUESTIONS[:1],
        stages=["rationale"],
        teacher=teacher,
        prompts=PromptConfig(chat=True),
        store_batch=batches.append,
    )
    [[request]] = teacher.calls
    assert isinstance(request.prompt, list) and request.prompt[0]["role"] == "system"
    [[record]] = batches
    assert record.prompt_version == "rationale/v1+chat"
    assert json.loads(record.prompt_text) == request.prompt


def test_replay_through_the_core_keeps_stored_texts(tmp_path: Path, prompt_config):
    row = {
        "id": "q0",
        "rationale": "R",
        "critique": "first line\nsecond line",
        "revision": "It ends mid",
        "counterfactual_rationales": [f"cf {i}" for i in range(5)],
    }
    path = tmp_path / "teacher.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    batches: list[list[OutputRecord]] = []
    run_generation(
        QUESTIONS[:1],
        stages=ALL_STAGES,
        teacher=ReplayTeacher(path),
        prompts=prompt_config,
        store_batch=batches.append,
    )
    records = {record.key: record for record in records_of(batches)}
    assert records[("q0", "critique", None)].text == "first line\nsecond line"
    assert records[("q0", "counterfactual", 3)].text == "cf 3"
    revision = records[("q0", "revision", None)]
    assert revision.prompt_version == "revision/replay:teacher.jsonl" and revision.prompt_text == ""
    assert revision.meta["ends_mid_sentence"] and not revision.truncated
    assert records[("q0", "rationale", None)].meta["finish_reason"] != FINISH_STOP
