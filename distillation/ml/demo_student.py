"""The demo's student: a small T5 with a corpus-trained subword tokenizer, pre-trained once on the training corpus.

Real students start from a pre-trained T5; a randomly initialised one cannot learn to write in the few minutes a
demo has on a CPU. So the demo builds its own small base model once: a byte-level BPE tokenizer trained on the
training split's questions, choices and teacher rationales, and a small T5 pre-trained on the same text as a
conditional language model (the encoder reads a question, its choices and the first words of a rationale, the
decoder writes the rest). The folder it saves is an ordinary checkpoint: ``train_student`` fine-tunes each
condition from it by path, and the fine-tuned students reload offline with ``from_pretrained``.

Only training-split text is used, and both the unrevised and the revised rationales, so the base favours no
condition; the conditions differ by their fine-tuning. The saved generation settings
(``no_repeat_ngram_size``) keep greedy decoding of a small model from looping.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillation.ml.tasks import format_question

Progress = Callable[[int, int, str, dict[str, float]], None]
BASE_INFO_FILE = "evalsite_demo_base.json"
_PARTIAL_DIR = ".partial"
_PARTIAL_STATE = "state.pt"
CONTINUE_PREFIX = "[continue]"


@dataclass(frozen=True)
class CorpusDocument:
    """One text of the training corpus with the question it belongs to."""

    question: str
    choices: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class DemoStudentSize:
    vocab_size: int = 2000
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512


@dataclass(frozen=True)
class BasePretraining:
    """How the base model is pre-trained; part of its fingerprint, so changing any of it builds a new one."""

    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    max_input_tokens: int = 96
    max_target_tokens: int = 48
    seed: int = 0
    checkpoint_every: int = 250


def base_fingerprint(documents: Sequence[CorpusDocument], size: DemoStudentSize, training: BasePretraining) -> str:
    """A hash of the corpus and every setting: a cached base is reused only for exactly this build."""
    digest = hashlib.sha256(json.dumps([asdict(size), asdict(training)], sort_keys=True).encode())
    for document in documents:
        digest.update("\x1f".join([document.question, *document.choices, document.text]).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def tokenizer_texts(documents: Sequence[CorpusDocument]) -> list[str]:
    """The texts the tokenizer learns from, written as the tasks write them (prefixes, choice letters)."""
    seen_questions: set[str] = set()
    texts = []
    for document in documents:
        if document.question not in seen_questions:
            seen_questions.add(document.question)
            texts.append(format_question(document.question, document.choices))
        texts.append(document.text)
    texts.append("[predict] [explain] [factual] [counterfactual] [continue] Rationale: So the answer is The answer is")
    return texts


def build_model(tokenizer: Any, size: DemoStudentSize, seed: int) -> Any:
    import torch
    from transformers import T5ForConditionalGeneration

    from distillation.ml.tiny import small_t5_config

    config = small_t5_config(
        tokenizer, d_model=size.d_model, n_heads=size.n_heads, d_ff=size.d_ff, n_layers=size.n_layers, dropout_rate=0.0
    )
    # T5 v1.0's layout: the output head is the input embedding, applied to decoder states scaled by
    # d_model ** -0.5 (transformers ties the weights whatever the config says; untying via the config only
    # drops that scaling, which starts training with logits of standard deviation sqrt(d_model)).
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    # Greedy decoding of a small model loops ("the the the"); forbidding repeated trigrams stops that.
    model.generation_config.no_repeat_ngram_size = 3
    model.generation_config.repetition_penalty = 1.2
    return model


def continuation_pair(document: CorpusDocument, rng: np.random.Generator) -> tuple[str, str]:
    """(encoder text, decoder text): the question, its choices and the first k words, then the rest."""
    words = document.text.split()
    cut = int(rng.integers(0, max(len(words) // 2, 0) + 1))
    prefix = " ".join(words[:cut])
    source = f"{CONTINUE_PREFIX} {format_question(document.question, document.choices)}\nText: {prefix}"
    return source, " ".join(words[cut:])


def build_base_student(
    documents: Sequence[CorpusDocument],
    directory: Path | str,
    *,
    size: DemoStudentSize = DemoStudentSize(),
    training: BasePretraining = BasePretraining(),
    progress: Progress | None = None,
    threads: int | None = None,
) -> Path:
    """Train the tokenizer and pre-train the base model into ``directory``; reuse it when it is there already.

    Resumes from the last partial checkpoint (every ``checkpoint_every`` steps) of an interrupted build.
    """
    import torch

    from distillation.ml.students import Student, save_student
    from distillation.ml.subword import train_subword_tokenizer

    directory = Path(directory)
    fingerprint = base_fingerprint(documents, size, training)
    if _is_built(directory, fingerprint):
        return directory
    if not documents:
        raise ValueError("the demo student's base model needs training texts: import teacher outputs first")
    if threads:
        torch.set_num_threads(threads)
    report = progress or (lambda *args: None)
    partial = directory / _PARTIAL_DIR
    tokenizer_dir = partial / "tokenizer"
    report(0, training.steps, "training the tokenizer", {})
    if (tokenizer_dir / "tokenizer.json").is_file() and _partial_fingerprint(partial) == fingerprint:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        shutil.rmtree(partial, ignore_errors=True)
        tokenizer = train_subword_tokenizer(tokenizer_texts(documents), vocab_size=size.vocab_size)
        tokenizer.save_pretrained(tokenizer_dir)
        (partial / "fingerprint").write_text(fingerprint)

    model = build_model(tokenizer, size, training.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _schedule(step, training))
    step = 0
    state_file = partial / _PARTIAL_STATE
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        report(step, training.steps, "resuming", {})

    model.train()
    while step < training.steps:
        started = time.perf_counter()
        batch = _batch(documents, tokenizer, training, step)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - started
        report(step, training.steps, "pre-training the base model", {"loss": loss.item(), "steps_per_s": 1 / seconds})
        if step % training.checkpoint_every == 0 and step < training.steps:
            temporary = partial / f".tmp-{_PARTIAL_STATE}"
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            torch.save({**state, "scheduler": scheduler.state_dict()}, temporary)
            os.replace(temporary, state_file)

    report(step, training.steps, "saving the base model", {})
    final_tmp = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(final_tmp, ignore_errors=True)
    save_student(Student(model, tokenizer, True, "demo-base"), final_tmp, metadata={"base": True})
    info = {"fingerprint": fingerprint, "size": asdict(size), "pretraining": asdict(training)}
    (final_tmp / BASE_INFO_FILE).write_text(json.dumps({**info, "documents": len(documents)}, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(final_tmp, directory)
    return directory


def _schedule(step: int, training: BasePretraining) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < training.warmup_steps:
        return (step + 1) / training.warmup_steps
    progress = (step - training.warmup_steps) / max(training.steps - training.warmup_steps, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _batch(documents: Sequence[CorpusDocument], tokenizer: Any, training: BasePretraining, step: int) -> dict:
    """The step's documents (seeded by step, so a resumed build sees what the interrupted one would have)."""
    rng = np.random.default_rng([training.seed, step])
    picked = rng.choice(len(documents), size=min(training.batch_size, len(documents)), replace=False)
    pairs = [continuation_pair(documents[i], rng) for i in picked]
    sources = tokenizer(
        [s for s, _ in pairs], truncation=True, max_length=training.max_input_tokens, padding=True, return_tensors="pt"
    )
    targets = tokenizer(
        [t for _, t in pairs], truncation=True, max_length=training.max_target_tokens, padding=True, return_tensors="pt"
    )
    labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
    return {"input_ids": sources["input_ids"], "attention_mask": sources["attention_mask"], "labels": labels}


def _partial_fingerprint(partial: Path) -> str:
    path = partial / "fingerprint"
    return path.read_text().strip() if path.is_file() else ""


def _is_built(directory: Path, fingerprint: str) -> bool:
    info = directory / BASE_INFO_FILE
    return info.is_file() and json.loads(info.read_text()).get("fingerprint") == fingerprint
