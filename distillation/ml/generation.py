"""Teacher generation: plans the stages in dependency order and drives a back-end batch by batch, resumably."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillation.ml.postprocess import clean_completion, looks_truncated
from distillation.ml.prompts import (
    COUNTERFACTUAL,
    CRITIQUE,
    RATIONALE,
    REVISION,
    STAGE_KINDS,
    BuiltPrompt,
    PromptConfig,
)
from distillation.ml.records import QuestionRecord
from distillation.ml.teachers import FINISH_LENGTH, RequestKey, TeacherBackend, TeacherRequest, TeacherResult

OutputKey = tuple[str, str, int | None]  # (question source id, stage kind, choice index or None)

# The paper's limits; every consumer kept only the first line, so generation stops at the first line break.
DEFAULT_TOKEN_LIMITS = {RATIONALE: 160, CRITIQUE: 300, REVISION: 300, COUNTERFACTUAL: 512}
DEFAULT_STOP = ("\n",)
STAGE_DEPENDENCIES: dict[str, tuple[str, ...]] = {CRITIQUE: (RATIONALE,), REVISION: (RATIONALE, CRITIQUE)}


@dataclass(frozen=True)
class OutputRecord:
    source_id: str
    kind: str
    choice_index: int | None
    text: str
    prompt_text: str
    prompt_version: str
    truncated: bool
    empty: bool
    n_tokens: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> OutputKey:
        return (self.source_id, self.kind, self.choice_index)


@dataclass(frozen=True)
class GenerationSettings:
    batch_size: int = 16
    temperature: float = 0.0  # greedy, as in the paper
    stop: tuple[str, ...] = DEFAULT_STOP
    token_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TOKEN_LIMITS))


@dataclass
class GenerationSummary:
    stages: list[str]
    total: int  # outputs this run had to make (what was already stored is not counted)
    done: int = 0
    skipped: int = 0  # outputs already stored
    stopped: bool = False  # should_stop() asked to halt before everything was made
    by_stage: dict[str, int] = field(default_factory=dict)


def prompt_config_for(
    teacher: TeacherBackend, *, fewshot_path: str | Path | None = None, seed: int = 0, style: str = "auto"
) -> PromptConfig:
    """Prompts for a teacher: `style` "auto" uses chat messages where the teacher prefers them."""
    if style not in {"auto", "plain", "chat"}:
        raise ValueError(f"prompt style {style!r}: expected auto, plain or chat")
    chat = teacher.prompt_style == "chat" if style == "auto" else style == "chat"
    return PromptConfig.from_path(fewshot_path, chat=chat, seed=seed)


def plan_stages(requested: Iterable[str]) -> list[str]:
    """The requested stages and the ones they need, in the order they must run."""
    wanted = set(requested)
    unknown = wanted - set(STAGE_KINDS)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; expected some of {list(STAGE_KINDS)}")
    for stage in list(wanted):
        wanted.update(STAGE_DEPENDENCIES.get(stage, ()))
    return [stage for stage in STAGE_KINDS if stage in wanted]


def stage_keys(stage: str, question: QuestionRecord) -> list[OutputKey]:
    if stage == COUNTERFACTUAL:
        return [(question.source_id, stage, index) for index in range(len(question.choices))]
    return [(question.source_id, stage, None)]


def _pending_keys(
    stages: Sequence[str], questions: Sequence[QuestionRecord], stored: Mapping[OutputKey, str]
) -> dict[str, list[tuple[QuestionRecord, OutputKey]]]:
    return {
        stage: [(q, key) for q in questions for key in stage_keys(stage, q) if key not in stored] for stage in stages
    }


class _StagePrompter:
    """Builds the prompt for one output key from the question and the texts of earlier stages."""

    def __init__(self, prompts: PromptConfig, texts: Mapping[OutputKey, str]) -> None:
        self.prompts = prompts
        self.texts = texts

    def build(self, question: QuestionRecord, key: OutputKey) -> BuiltPrompt:
        source_id, stage, choice_index = key
        q = question
        if stage == RATIONALE:
            return self.prompts.rationale(source_id, q.question, q.choices, q.answer)
        if stage == COUNTERFACTUAL:
            assert choice_index is not None
            return self.prompts.counterfactual(q.question, q.choices, choice_index)
        rationale = self.texts[(source_id, RATIONALE, None)]
        if stage == CRITIQUE:
            return self.prompts.critique(source_id, q.question, q.choices, q.answer, rationale)
        critique = self.texts[(source_id, CRITIQUE, None)]
        return self.prompts.revision(source_id, q.question, q.choices, q.answer, rationale, critique)


def _verbatim_record(key: OutputKey, result: TeacherResult, teacher: TeacherBackend) -> OutputRecord:
    """A replayed text, stored as it was: its prompt was not ours, so the version names the source instead."""
    source_id, stage, choice_index = key
    return OutputRecord(
        source_id=source_id,
        kind=stage,
        choice_index=choice_index,
        text=result.text,
        prompt_text="",
        prompt_version=f"{stage}/{teacher.name}",
        truncated=False,
        empty=not result.text.strip(),
        n_tokens=result.n_tokens,
        meta={
            "teacher": teacher.name,
            "finish_reason": result.finish_reason,
            "ends_mid_sentence": looks_truncated(result.text),
        },
    )


def _generated_record(
    key: OutputKey,
    prompt: BuiltPrompt,
    result: TeacherResult,
    teacher: TeacherBackend,
    prompts: PromptConfig,
    settings: GenerationSettings,
    max_new_tokens: int,
) -> OutputRecord:
    source_id, stage, choice_index = key
    prompt_text = prompt.text
    cleaned = clean_completion(
        result.raw_text,
        prompt=prompt_text if isinstance(prompt.content, str) else None,
        stop=settings.stop,
        hit_token_limit=result.finish_reason == FINISH_LENGTH,
    )
    return OutputRecord(
        source_id=source_id,
        kind=stage,
        choice_index=choice_index,
        text=cleaned.text,
        prompt_text=prompt_text,
        prompt_version=prompt.version,
        truncated=cleaned.truncated,
        empty=cleaned.empty,
        n_tokens=result.n_tokens,
        meta={
            "teacher": teacher.name,
            "finish_reason": result.finish_reason,
            "raw_text": result.raw_text,
            "ends_mid_sentence": looks_truncated(cleaned.text),
            "max_new_tokens": max_new_tokens,
            "temperature": settings.temperature,
            "prompt_seed": prompts.seed,
            "fewshot_digest": prompts.fewshot.digest,
            **prompt.draws,
        },
    )


@dataclass(frozen=True)
class GeneratedBatch:
    stage: str
    records: list[OutputRecord]
    done: int  # outputs made so far in this run, this batch included
    total: int


def iter_generation(
    questions: Sequence[QuestionRecord],
    *,
    stages: Iterable[str],
    teacher: TeacherBackend,
    prompts: PromptConfig,
    stored: Mapping[OutputKey, str] | None = None,
    settings: GenerationSettings = GenerationSettings(),
) -> Iterator[GeneratedBatch]:
    """Batches of new outputs, stage after stage; keys in `stored` are skipped and their texts reused.

    Later stages read earlier texts from `stored` and from what this iterator has yielded, so the caller
    must not drop a yielded batch silently if it wants the run to be reproducible on resume.
    """
    planned = plan_stages(stages)
    texts: dict[OutputKey, str] = dict(stored or {})
    pending = _pending_keys(planned, questions, texts)
    total = sum(len(keys) for keys in pending.values())
    prompter = _StagePrompter(prompts, texts)
    done = 0
    for stage in planned:
        max_new_tokens = settings.token_limits[stage]
        keys = pending[stage]
        for start in range(0, len(keys), settings.batch_size):
            chunk = keys[start : start + settings.batch_size]
            records = _generate_chunk(chunk, prompter, teacher, settings, max_new_tokens)
            for record in records:
                texts[record.key] = record.text
            done += len(records)
            yield GeneratedBatch(stage=stage, records=records, done=done, total=total)


def _generate_chunk(
    chunk: Sequence[tuple[QuestionRecord, OutputKey]],
    prompter: _StagePrompter,
    teacher: TeacherBackend,
    settings: GenerationSettings,
    max_new_tokens: int,
) -> list[OutputRecord]:
    if teacher.verbatim:
        requests = [TeacherRequest(RequestKey(*key), "") for _, key in chunk]
        results = teacher.generate(requests, max_new_tokens=max_new_tokens)
        return [_verbatim_record(key, result, teacher) for (_, key), result in zip(chunk, results, strict=True)]
    prompts = [prompter.build(question, key) for question, key in chunk]
    requests = [
        TeacherRequest(RequestKey(*key), prompt.content) for (_, key), prompt in zip(chunk, prompts, strict=True)
    ]
    results = teacher.generate(
        requests, max_new_tokens=max_new_tokens, temperature=settings.temperature, stop=settings.stop
    )
    return [
        _generated_record(key, prompt, result, teacher, prompter.prompts, settings, max_new_tokens)
        for (_, key), prompt, result in zip(chunk, prompts, results, strict=True)
    ]


def run_generation(
    questions: Sequence[QuestionRecord],
    *,
    stages: Iterable[str],
    teacher: TeacherBackend,
    prompts: PromptConfig,
    store_batch: Callable[[list[OutputRecord]], None],
    stored: Mapping[OutputKey, str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    settings: GenerationSettings = GenerationSettings(),
) -> GenerationSummary:
    """Generate what is not stored yet, handing each batch to `store_batch` (one transaction per batch).

    `progress(done, total, stage)` follows every stored batch; `should_stop()` is asked before each batch,
    so a cancelled run leaves only whole batches behind and the next run resumes after them.
    """
    stored = stored or {}
    planned = plan_stages(stages)
    summary = GenerationSummary(
        stages=planned,
        total=sum(len(keys) for keys in _pending_keys(planned, questions, stored).values()),
        skipped=sum(1 for q in questions for stage in planned for key in stage_keys(stage, q) if key in stored),
    )
    batches = iter_generation(
        questions, stages=planned, teacher=teacher, prompts=prompts, stored=stored, settings=settings
    )
    while True:
        if should_stop is not None and should_stop():
            summary.stopped = summary.done < summary.total
            batches.close()
            break
        batch = next(batches, None)
        if batch is None:
            break
        store_batch(batch.records)
        summary.done = batch.done
        summary.by_stage[batch.stage] = summary.by_stage.get(batch.stage, 0) + len(batch.records)
        if progress is not None:
            progress(batch.done, batch.total, batch.stage)
    return summary
