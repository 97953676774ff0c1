"""Teacher prompts for each generation stage, as plain completions or chat messages, with template versions."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ChatMessages = list[dict[str, str]]
Prompt = str | ChatMessages

RATIONALE = "rationale"
CRITIQUE = "critique"
REVISION = "revision"
COUNTERFACTUAL = "counterfactual"
STAGE_KINDS = (RATIONALE, CRITIQUE, REVISION, COUNTERFACTUAL)

DEFAULT_FEWSHOT_PATH = Path(__file__).parent / "fewshot" / "cqa_default.json"
CHOICE_LETTERS = "abcdefghij"
QUALITIES_PER_RATIONALE = 2

# The rationale prompt asks for two of these qualities, drawn per question (the paper's code drew them too).
RATIONALE_QUALITIES = (
    "clear",
    "concise",
    "complete",
    "accurate",
    "logically sound",
    "specific to the question",
    "easy to follow",
    "informative",
    "well reasoned",
    "grounded in everyday knowledge",
)

# (critique request, revision request): one pair is drawn per question and used by both stages.
REQUEST_PAIRS = (
    (
        "Is the explanation correct, complete, clear and concise, and does it say why the other choices "
        "are worse? Name every problem.",
        "Rewrite the explanation so that it fixes every problem the critique names, still supports the "
        "given answer, and says why the other choices are worse.",
    ),
    (
        "Check the explanation: is anything wrong, missing, confusing or longer than it needs to be? Does "
        "it contrast the answer with the other choices?",
        "Write an improved explanation that corrects what the critique found, keeps the same answer, and "
        "contrasts it with the other choices.",
    ),
    (
        "Point out where the explanation is incorrect, incomplete, unclear or wordy, and whether it fails to "
        "explain why the remaining choices are weaker.",
        "Revise the explanation to address each point of the critique while keeping the answer, and explain "
        "why the remaining choices are weaker.",
    ),
    (
        "Critique the explanation. Judge whether it is correct, whether it leaves out anything needed, "
        "whether it is easy to follow and brief, and whether it rules out the other choices.",
        "Using the critique, write a better explanation for the same answer that is correct, complete, easy "
        "to follow and brief, and that rules out the other choices.",
    ),
    (
        "What would a careful teacher criticise in this explanation? Consider correctness, completeness, "
        "clarity, concision, and whether the other choices are shown to be worse.",
        "Rewrite the explanation the way a careful teacher would after reading the critique, keeping the "
        "answer and showing why the other choices are worse.",
    ),
    (
        "Does the explanation actually justify the answer? Say what is false, missing or unclear in it, "
        "whether it could be shorter, and whether it deals with the other choices.",
        "Write a new explanation that properly justifies the same answer, repairs what the critique says is "
        "false, missing or unclear, and deals with the other choices.",
    ),
    (
        "List the weaknesses of the explanation: factual errors, gaps in the reasoning, unclear wording, "
        "needless length, and a missing comparison with the other choices.",
        "Produce a version of the explanation without the weaknesses listed in the critique, for the same "
        "answer, including a comparison with the other choices.",
    ),
    (
        "Evaluate the explanation for correctness, completeness, clarity and concision, and say whether it "
        "explains why each other choice is a worse answer.",
        "Improve the explanation according to the evaluation: keep the answer, make it correct, complete, "
        "clear and concise, and explain why each other choice is a worse answer.",
    ),
    (
        "Would a reader be convinced by this explanation? Identify anything incorrect, incomplete, vague or "
        "padded, and say whether it shows why the other choices lose.",
        "Rewrite the explanation so that a reader would be convinced: address the critique, keep the answer, "
        "and show why the other choices lose.",
    ),
    (
        "Review the explanation and report its flaws: is the reasoning right and complete, is it clearly "
        "and concisely written, and does it say what makes the other choices worse?",
        "Rewrite the explanation to remove the flaws reported in the review, keeping the answer and saying "
        "what makes the other choices worse.",
    ),
)


@dataclass(frozen=True)
class FewShotExample:
    question: str
    choices: tuple[str, ...]
    answer: str
    rationale: str
    negative_rationale: str
    critique: str
    revision: str


@dataclass(frozen=True)
class FewShotSet:
    examples: tuple[FewShotExample, ...]
    digest: str  # sha256 of the examples' content, so prompts built from other examples are told apart

    @property
    def is_default(self) -> bool:
        return self.digest == load_fewshot().digest


@dataclass(frozen=True)
class PromptTemplate:
    """Every piece of text one stage's prompt is made of; its version must change whenever any of it does."""

    kind: str
    version: str
    instruction: str
    example_format: str
    query_format: str
    # Chat variant: the instruction is the system message, each example a user turn then an assistant turn.
    chat_user_format: str
    answer_field: str
    extra_text: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        parts = [self.instruction, self.example_format, self.query_format, self.chat_user_format]
        parts += [self.answer_field, *self.extra_text]
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


_QUESTION_BLOCK = "Question: {question}\nChoices: {choices}\nAnswer: {answer}\n"

RATIONALE_TEMPLATE = PromptTemplate(
    kind=RATIONALE,
    version="rationale/v1",
    instruction=(
        "Each question below has five answer choices, and its correct answer is given. After "
        '"Explanation:", write on a single line an explanation of why that answer is correct that is '
        "{quality_a} and {quality_b}."
    ),
    example_format=_QUESTION_BLOCK + "Explanation: {output}\n\n",
    query_format=_QUESTION_BLOCK + "Explanation:",
    chat_user_format=_QUESTION_BLOCK + "Explain why this answer is correct.",
    answer_field="rationale",
    extra_text=RATIONALE_QUALITIES,
)

# Both stages print requests from the same pairs, so both fingerprints cover every request.
_ALL_REQUESTS = tuple(request for pair in REQUEST_PAIRS for request in pair)
_EXPLAINED_BLOCK = _QUESTION_BLOCK + "Explanation: {rationale}\nCritique request: {critique_request}\n"

CRITIQUE_TEMPLATE = PromptTemplate(
    kind=CRITIQUE,
    version="critique/v1",
    instruction=(
        "Each question below has five answer choices, its correct answer, and an explanation of that "
        'answer. After "Critique:", write on a single line a critique of the explanation that answers the '
        "critique request."
    ),
    example_format=_EXPLAINED_BLOCK + "Critique: {output}\n\n",
    query_format=_EXPLAINED_BLOCK + "Critique:",
    chat_user_format=_EXPLAINED_BLOCK + "Write the critique.",
    answer_field="critique",
    extra_text=_ALL_REQUESTS,
)

_CRITIQUED_BLOCK = _EXPLAINED_BLOCK + "Critique: {critique}\nRevision request: {revision_request}\n"

REVISION_TEMPLATE = PromptTemplate(
    kind=REVISION,
    version="revision/v1",
    instruction=(
        "Each question below has five answer choices, its correct answer, an explanation of that answer "
        'and a critique of the explanation. After "Revision:", write on a single line a new explanation for '
        "the same answer that answers the revision request."
    ),
    example_format=_CRITIQUED_BLOCK + "Revision: {output}\n\n",
    query_format=_CRITIQUED_BLOCK + "Revision:",
    chat_user_format=_CRITIQUED_BLOCK + "Write the revised explanation.",
    answer_field="revision",
    extra_text=_ALL_REQUESTS,
)

COUNTERFACTUAL_TEMPLATE = PromptTemplate(
    kind=COUNTERFACTUAL,
    version="counterfactual/v1",
    instruction=(
        "Each question below has five answer choices, and one of them is given as the answer. After "
        '"Explanation:", write on a single line an explanation that argues for the given answer as if it '
        "were the correct one."
    ),
    example_format=_QUESTION_BLOCK + "Explanation: {output}\n\n",
    query_format=_QUESTION_BLOCK + "Explanation:",
    chat_user_format=_QUESTION_BLOCK + "Argue for this answer as if it were correct.",
    answer_field="rationale",
)

TEMPLATES: dict[str, PromptTemplate] = {
    template.kind: template
    for template in (RATIONALE_TEMPLATE, CRITIQUE_TEMPLATE, REVISION_TEMPLATE, COUNTERFACTUAL_TEMPLATE)
}


@dataclass(frozen=True)
class BuiltPrompt:
    """A prompt ready for a back-end, with the version to store and the random draws that shaped it."""

    content: Prompt
    version: str
    draws: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The prompt as one string for storage: chat messages as JSON."""
        return prompt_as_text(self.content)


def prompt_as_text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def format_choices(choices: Sequence[str]) -> str:
    """Choices the way the paper's prompts wrote them: `(a) first (b) second ...`."""
    return " ".join(f"({letter}) {choice}" for letter, choice in zip(CHOICE_LETTERS, choices, strict=False))


def load_fewshot(path: str | Path | None = None) -> FewShotSet:
    """Few-shot examples from a JSON file (`{"examples": [...]}`); the bundled defaults when path is None."""
    if path is None:
        return _load_default_fewshot()
    return _parse_fewshot(Path(path).read_text(encoding="utf-8"), source=str(path))


_default_fewshot_cache: list[FewShotSet] = []


def _load_default_fewshot() -> FewShotSet:
    if not _default_fewshot_cache:
        text = DEFAULT_FEWSHOT_PATH.read_text(encoding="utf-8")
        _default_fewshot_cache.append(_parse_fewshot(text, source=str(DEFAULT_FEWSHOT_PATH)))
    return _default_fewshot_cache[0]


def _parse_fewshot(text: str, *, source: str) -> FewShotSet:
    rows = json.loads(text)["examples"]
    if not rows:
        raise ValueError(f"{source}: no few-shot examples")
    fields = [name for name in FewShotExample.__dataclass_fields__ if name != "choices"]
    examples = []
    for number, row in enumerate(rows, start=1):
        missing = [name for name in [*fields, "choices"] if not row.get(name)]
        if missing:
            raise ValueError(f"{source}: example {number} lacks {', '.join(missing)}")
        examples.append(FewShotExample(choices=tuple(row["choices"]), **{name: row[name] for name in fields}))
    return _fewshot_set(examples)


def _fewshot_set(examples: Sequence[FewShotExample]) -> FewShotSet:
    canonical = json.dumps([example.__dict__ for example in examples], sort_keys=True, ensure_ascii=False)
    return FewShotSet(tuple(examples), hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def first_examples(fewshot: FewShotSet, count: int) -> FewShotSet:
    """The first `count` examples, as their own set (and digest), for teachers with a short context."""
    if count < 1:
        raise ValueError("a few-shot prompt needs at least one example")
    return fewshot if count >= len(fewshot.examples) else _fewshot_set(fewshot.examples[:count])


def seeded_rng(seed: int, source_id: str, purpose: str) -> random.Random:
    """A generator that gives the same draws for the same run seed, question and purpose on any machine."""
    digest = hashlib.sha256(f"{seed}\x1f{source_id}\x1f{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_qualities(seed: int, source_id: str) -> tuple[str, str]:
    first, second = seeded_rng(seed, source_id, "qualities").sample(RATIONALE_QUALITIES, QUALITIES_PER_RATIONALE)
    return first, second


def draw_request_pair(seed: int, source_id: str) -> int:
    """Index into REQUEST_PAIRS; critique and revision of one question share it."""
    return seeded_rng(seed, source_id, "request-pair").randrange(len(REQUEST_PAIRS))


def _render(
    template: PromptTemplate,
    *,
    instruction: str,
    shots: Sequence[tuple[dict[str, str], str]],
    query: dict[str, str],
    chat: bool,
) -> Prompt:
    """Plain text: instruction, worked examples, then the query left open for the teacher to continue."""
    if not chat:
        blocks = [template.example_format.format(output=output, **fields) for fields, output in shots]
        return instruction + "\n\n" + "".join(blocks) + template.query_format.format(**query)
    messages: ChatMessages = [{"role": "system", "content": instruction}]
    for fields, output in shots:
        messages.append({"role": "user", "content": template.chat_user_format.format(**fields)})
        messages.append({"role": "assistant", "content": output})
    messages.append({"role": "user", "content": template.chat_user_format.format(**query)})
    return messages


def _version(template: PromptTemplate, fewshot: FewShotSet, chat: bool) -> str:
    version = template.version + ("+chat" if chat else "")
    if not fewshot.is_default:
        version += f"+fewshot={fewshot.digest[:12]}"
    return version


def _question_fields(question: str, choices: Sequence[str], answer: str) -> dict[str, str]:
    return {"question": question, "choices": format_choices(choices), "answer": answer}


def build_rationale_prompt(
    *,
    question: str,
    choices: Sequence[str],
    answer: str,
    fewshot: FewShotSet,
    qualities: tuple[str, str],
    chat: bool = False,
) -> BuiltPrompt:
    """The teacher is told the correct answer and continues with its explanation."""
    template = RATIONALE_TEMPLATE
    instruction = template.instruction.format(quality_a=qualities[0], quality_b=qualities[1])
    shots = [(_question_fields(ex.question, ex.choices, ex.answer), ex.rationale) for ex in fewshot.examples]
    content = _render(
        template, instruction=instruction, shots=shots, query=_question_fields(question, choices, answer), chat=chat
    )
    return BuiltPrompt(content, _version(template, fewshot, chat), {"qualities": list(qualities)})


def build_critique_prompt(
    *,
    question: str,
    choices: Sequence[str],
    answer: str,
    rationale: str,
    fewshot: FewShotSet,
    request_pair: int,
    chat: bool = False,
) -> BuiltPrompt:
    """The examples critique deliberately poor rationales; the query asks for a critique of `rationale`."""
    template = CRITIQUE_TEMPLATE
    request = REQUEST_PAIRS[request_pair][0]
    shots = [
        (
            {
                **_question_fields(ex.question, ex.choices, ex.answer),
                "rationale": ex.negative_rationale,
                "critique_request": request,
            },
            ex.critique,
        )
        for ex in fewshot.examples
    ]
    query = {**_question_fields(question, choices, answer), "rationale": rationale, "critique_request": request}
    content = _render(template, instruction=template.instruction, shots=shots, query=query, chat=chat)
    return BuiltPrompt(content, _version(template, fewshot, chat), {"request_pair": request_pair})


def build_revision_prompt(
    *,
    question: str,
    choices: Sequence[str],
    answer: str,
    rationale: str,
    critique: str,
    fewshot: FewShotSet,
    request_pair: int,
    chat: bool = False,
) -> BuiltPrompt:
    """The teacher rewrites `rationale` to meet `critique`, for the same answer."""
    template = REVISION_TEMPLATE
    critique_request, revision_request = REQUEST_PAIRS[request_pair]
    requests = {"critique_request": critique_request, "revision_request": revision_request}
    shots = [
        (
            {
                **_question_fields(ex.question, ex.choices, ex.answer),
                "rationale": ex.negative_rationale,
                "critique": ex.critique,
                **requests,
            },
            ex.revision,
        )
        for ex in fewshot.examples
    ]
    query = {**_question_fields(question, choices, answer), "rationale": rationale, "critique": critique}
    content = _render(template, instruction=template.instruction, shots=shots, query={**query, **requests}, chat=chat)
    return BuiltPrompt(content, _version(template, fewshot, chat), {"request_pair": request_pair})


def build_counterfactual_prompt(
    *,
    question: str,
    choices: Sequence[str],
    choice_index: int,
    fewshot: FewShotSet,
    chat: bool = False,
) -> BuiltPrompt:
    """The named choice is presented as the answer, so the teacher argues for it whether or not it is right."""
    template = COUNTERFACTUAL_TEMPLATE
    shots = [(_question_fields(ex.question, ex.choices, ex.answer), ex.rationale) for ex in fewshot.examples]
    query = _question_fields(question, choices, choices[choice_index])
    content = _render(template, instruction=template.instruction, shots=shots, query=query, chat=chat)
    return BuiltPrompt(content, _version(template, fewshot, chat), {"choice": choices[choice_index]})


@dataclass(frozen=True)
class PromptConfig:
    """What shapes every prompt of a run: the few-shot examples, chat or plain, and the seed of the draws."""

    fewshot: FewShotSet = field(default_factory=load_fewshot)
    chat: bool = False
    seed: int = 0

    @classmethod
    def from_path(cls, fewshot_path: str | Path | None = None, *, chat: bool = False, seed: int = 0) -> PromptConfig:
        return cls(fewshot=load_fewshot(fewshot_path), chat=chat, seed=seed)

    def rationale(self, source_id: str, question: str, choices: Sequence[str], answer: str) -> BuiltPrompt:
        return build_rationale_prompt(
            question=question,
            choices=choices,
            answer=answer,
            fewshot=self.fewshot,
            qualities=draw_qualities(self.seed, source_id),
            chat=self.chat,
        )

    def critique(
        self, source_id: str, question: str, choices: Sequence[str], answer: str, rationale: str
    ) -> BuiltPrompt:
        return build_critique_prompt(
            question=question,
            choices=choices,
            answer=answer,
            rationale=rationale,
            fewshot=self.fewshot,
            request_pair=draw_request_pair(self.seed, source_id),
            chat=self.chat,
        )

    def revision(
        self, source_id: str, question: str, choices: Sequence[str], answer: str, rationale: str, critique: str
    ) -> BuiltPrompt:
        return build_revision_prompt(
            question=question,
            choices=choices,
            answer=answer,
            rationale=rationale,
            critique=critique,
            fewshot=self.fewshot,
            request_pair=draw_request_pair(self.seed, source_id),
            chat=self.chat,
        )

    def counterfactual(self, question: str, choices: Sequence[str], choice_index: int) -> BuiltPrompt:
        return build_counterfactual_prompt(
            question=question, choices=choices, choice_index=choice_index, fewshot=self.fewshot, chat=self.chat
        )


def stage_versions(config: PromptConfig) -> dict[str, str]:
    """The version each stage's prompts carry under this configuration (what a stored output records)."""
    return {kind: _version(TEMPLATES[kind], config.fewshot, config.chat) for kind in STAGE_KINDS}
