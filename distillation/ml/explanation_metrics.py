"""Automatic metrics of one explanation: length, ROUGE-L against the teacher, counterfactual consistency, LLM judge
and embedding similarity. Plain data in, plain data out; torch and transformers are imported where used."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from typing import Any

from distillation.ml.answers import CHOICE_LETTERS, normalise, parse_answer
from distillation.ml.tasks import TaskKind, counterfactual_target, task_input

# The families a caller may ask for, and the scores each one stores (a family may store more than one).
LENGTH = "length"
TEACHER_OVERLAP = "teacher_overlap"
CONSISTENCY = "consistency"
EMBEDDING_SIMILARITY = "embedding_similarity"
JUDGE_PREFIX = "judge:"
FAMILIES = (LENGTH, TEACHER_OVERLAP, CONSISTENCY, EMBEDDING_SIMILARITY)
SCORES_OF = {
    LENGTH: ("length_chars", "length_words"),
    TEACHER_OVERLAP: ("teacher_overlap",),
    CONSISTENCY: ("consistency", "consistency_probability"),
    EMBEDDING_SIMILARITY: ("embedding_similarity",),
}

LENGTH_VERSION = "v1"
CONSISTENCY_VERSION = "cf-format-v1"
EMBEDDING_VERSION = "mean-pool-cosine-v1"
JUDGE_PROMPT_VERSION = "judge-prompt-v1"
# A reply is a scale point only when it is a whole number and nothing else (a full stop may follow).
_SCALE_POINT = re.compile(r"\s*(\d{1,2})\s*\.?\s*")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Score:
    """One stored value; `value` None means the metric failed for this explanation (the reason is in detail)."""

    name: str
    version: str
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    raw_reply: str = ""


def parse_metric_list(raw: str) -> list[str]:
    """`length,teacher_overlap,judge:completeness` as a checked list, in the order given, without repeats."""
    names = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not names:
        raise ValueError("give at least one metric")
    for name in names:
        if name.startswith(JUDGE_PREFIX):
            if not name[len(JUDGE_PREFIX) :]:
                raise ValueError("judge:<construct> needs a construct name, e.g. judge:completeness")
        elif name not in FAMILIES:
            raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(FAMILIES)} or judge:<construct>")
    return names


def scores_of(family: str) -> tuple[str, ...]:
    """The score names a metric family stores."""
    return (family,) if family.startswith(JUDGE_PREFIX) else SCORES_OF[family]


# --- length and overlap -------------------------------------------------------------------------------------


def length_scores(text: str) -> list[Score]:
    return [
        Score("length_chars", LENGTH_VERSION, float(len(text))),
        Score("length_words", LENGTH_VERSION, float(len(_WORD.findall(text)))),
    ]


def rouge_version() -> str:
    return f"rouge-score-{installed_version('rouge-score')}/rougeL-f1/stemmed"


def rouge_l(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-L (longest common subsequence) precision, recall and F1 of `candidate` against `reference`,
    by Google's `rouge-score` package with Porter stemming."""
    from rouge_score import rouge_scorer

    score = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, candidate)["rougeL"]
    return {"precision": score.precision, "recall": score.recall, "f1": score.fmeasure}


def teacher_overlap_score(text: str, teacher_rationale: str) -> Score:
    scores = rouge_l(text, teacher_rationale)
    return Score("teacher_overlap", rouge_version(), scores["f1"], detail=scores)


# --- counterfactual consistency -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsistencyInput:
    question: str
    choices: tuple[str, ...]
    explanation: str
    predicted_answer: str


def consistency_input_text(case: ConsistencyInput) -> str:
    """The counterfactual task's input: the question, its choices and the rationale the answer must follow."""
    return task_input(TaskKind.COUNTERFACTUAL, case.question, case.choices, case.explanation)


def choice_index(answer: str, choices: Sequence[str]) -> int | None:
    wanted = normalise(answer)
    normalised = [normalise(choice) for choice in choices]
    return normalised.index(wanted) if wanted in normalised else None


def consistency_scores(
    student: Any,
    cases: Sequence[ConsistencyInput],
    *,
    version: str,
    max_input_tokens: int = 512,
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> list[list[Score]]:
    """Per case: does the student, reading the explanation as a counterfactual rationale, answer the predicted
    answer (1/0, from its greedy output), and the probability it gives that answer among the choices (from the
    likelihood of each choice's target text "So the answer is X.", normalised over the choices)."""
    from distillation.ml.inference import generate_texts

    inputs = [consistency_input_text(case) for case in cases]
    generated = generate_texts(
        student, inputs, max_input_tokens=max_input_tokens, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    out: list[list[Score]] = []
    for case, text, prompt in zip(cases, generated, inputs, strict=True):
        predicted = choice_index(case.predicted_answer, case.choices)
        if predicted is None:
            reason = f"the predicted answer {case.predicted_answer!r} is not one of the choices"
            failed = {"failure": reason}
            out.append([Score("consistency", version, None, failed), Score("consistency_probability", version, None)])
            continue
        parsed = parse_answer(text, case.choices)
        log_likelihoods = target_log_likelihoods(
            student, prompt, [counterfactual_target(choice) for choice in case.choices], max_input_tokens
        )
        probabilities = _softmax(log_likelihoods)
        detail = {
            "generated": text,
            "returned_choice": parsed.choice_index,
            "parse_status": str(parsed.status),
            "predicted_choice": predicted,
            "choice_probabilities": probabilities,
        }
        returned = parsed.choice_index is not None and normalise(case.choices[parsed.choice_index]) == normalise(
            case.choices[predicted]
        )
        out.append(
            [
                Score("consistency", version, 1.0 if returned else 0.0, detail, raw_reply=text),
                Score("consistency_probability", version, probabilities[predicted], {"choice": predicted}),
            ]
        )
    return out


def _softmax(values: Sequence[float]) -> list[float]:
    import math

    top = max(values)
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def target_log_likelihoods(student: Any, prompt: str, targets: Sequence[str], max_input_tokens: int) -> list[float]:
    """Sum of the log-probabilities of each target's tokens (and its eos) after `prompt`, as the student was
    trained to produce them (seq2seq: in the decoder; decoder-only: after the prompt and separator)."""
    import torch

    from distillation.ml.collate import TaskCollator, encode_prompts, encode_targets

    model, tokenizer = student.model, student.tokenizer
    device = next(model.parameters()).device
    [prompt_ids] = encode_prompts(tokenizer, [prompt], max_input_tokens, student.is_encoder_decoder)
    target_ids = encode_targets(tokenizer, list(targets), 64, student.is_encoder_decoder)
    width = max(len(ids) for ids in target_ids)
    labels = torch.full((len(targets), width), -100, dtype=torch.long)
    for row, ids in enumerate(target_ids):
        labels[row, : len(ids)] = torch.tensor(ids)
    model.eval()
    with torch.inference_mode():
        if student.is_encoder_decoder:
            collator = TaskCollator(tokenizer.pad_token_id, model.config.decoder_start_token_id)
            input_ids = torch.tensor([prompt_ids] * len(targets))
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=torch.ones_like(input_ids).to(device),
                decoder_input_ids=collator.shift_right(labels).to(device),
            ).logits
            gold = labels
        else:
            rows = [prompt_ids + ids for ids in target_ids]
            length = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            gold = torch.full_like(input_ids, -100)
            for row, ids in enumerate(rows):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
                gold[row, len(prompt_ids) : len(ids)] = torch.tensor(target_ids[row])
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits[:, :-1]
            gold = gold[:, 1:]
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
        picked = log_probs.gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        picked = picked.masked_fill(gold == -100, 0.0)
        return [float(v) for v in picked.sum(dim=1)]


# --- LLM judge ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeRubric:
    """A construct as annotators see it: its label, its question and the labels of its scale points."""

    name: str
    label: str
    prompt: str
    scale_size: int
    anchors: tuple[str, ...] = ()


@dataclass(frozen=True)
class JudgeCase:
    key: str  # identifies the explanation version (the replay file's id)
    question: str
    choices: tuple[str, ...]
    answer: str
    explanation: str


def judge_version(spec: str) -> str:
    return f"{JUDGE_PROMPT_VERSION}|{spec}"


def judge_prompt_text(rubric: JudgeRubric, case: JudgeCase) -> str:
    """The judge's instructions (version JUDGE_PROMPT_VERSION): the construct's own wording and the study's scale."""
    listed = " ".join(f"({letter}) {choice}" for letter, choice in zip(CHOICE_LETTERS, case.choices, strict=False))
    scale = f"1 to {rubric.scale_size}"
    if len(rubric.anchors) == rubric.scale_size:
        points = "; ".join(f"{point} = {anchor}" for point, anchor in enumerate(rubric.anchors, start=1))
        scale = f"{scale} ({points})"
    answer = f"\nAnswer: {case.answer}" if case.answer else ""
    return (
        "You rate an explanation of the answer to a multiple-choice question, as a careful human annotator would.\n\n"
        f"Question: {case.question}\nChoices: {listed}{answer}\nExplanation: {case.explanation}\n\n"
        f"{rubric.label}: {rubric.prompt}\n"
        f"Rate on a scale from {scale}. Reply with one whole number from 1 to {rubric.scale_size} and nothing else."
    )


def judge_prompt(rubric: JudgeRubric, case: JudgeCase, prompt_style: str) -> str | list[dict[str, str]]:
    text = judge_prompt_text(rubric, case)
    if prompt_style == "chat":
        return [{"role": "user", "content": text}]
    return f"{text}\nRating:"


def parse_scale_point(reply: str, scale_size: int) -> int | None:
    """The scale point a reply names, or None: only a bare whole number on the scale counts, nothing is guessed."""
    match = _SCALE_POINT.fullmatch(reply)
    if match is None:
        return None
    point = int(match.group(1))
    return point if 1 <= point <= scale_size else None


def judge_scores(backend: Any, rubric: JudgeRubric, cases: Sequence[JudgeCase], *, spec: str) -> list[Score]:
    """One judge score per case, through a teacher back-end at temperature 0; the raw reply is kept, and a reply
    that is not a scale point is stored as a failure (value None)."""
    from distillation.ml.teachers import RequestKey, TeacherRequest

    name = f"{JUDGE_PREFIX}{rubric.name}"
    requests = [
        TeacherRequest(RequestKey(case.key, name), judge_prompt(rubric, case, backend.prompt_style)) for case in cases
    ]
    results = backend.generate(requests, max_new_tokens=8, temperature=0.0)
    scores = []
    for request, result in zip(requests, results, strict=True):
        raw = result.raw_text
        point = parse_scale_point(raw, rubric.scale_size)
        detail: dict[str, Any] = {"scale_size": rubric.scale_size, "prompt": request.prompt}
        if point is None:
            detail["failure"] = f"the reply is not a point of the 1-{rubric.scale_size} scale"
        scores.append(Score(name, judge_version(spec), None if point is None else float(point), detail, raw))
    return scores


# --- embedding similarity -----------------------------------------------------------------------------------


def load_embedder(path: str) -> tuple[Any, Any]:
    """A sentence-embedding checkpoint (any encoder `AutoModel` loads) and its tokenizer, from a path."""
    from transformers import AutoModel, AutoTokenizer

    from distillation.ml.text import check_model_location

    check_model_location(path)
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def embed(model: Any, tokenizer: Any, texts: Sequence[str], max_tokens: int = 256) -> Any:
    """Mean of the last hidden states over real tokens, L2-normalised, one row per text."""
    import torch

    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def embedding_similarity_scores(
    model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], *, path: str
) -> list[Score]:
    """Cosine similarity between each explanation and the teacher's rationale for its question."""
    if not pairs:
        return []
    left = embed(model, tokenizer, [a for a, _ in pairs])
    right = embed(model, tokenizer, [b for _, b in pairs])
    cosines = (left * right).sum(dim=-1).tolist()
    return [Score("embedding_similarity", f"{EMBEDDING_VERSION}|{path}", float(c)) for c in cosines]
