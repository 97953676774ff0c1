"""Benchmark behind the demo student's choice: optimizer steps per second, and the text quality a budget buys.

Run: ``.venv/bin/python bench/demo_student.py [--data-dir DIR] [--threads N] [--precision bf16]``. Measures the
base's pre-training step (the four task formats, batches of 16) in steps per second, cut into length-sorted chunks
as the base trains and as one padded batch, for a small T5 trained from scratch (with a corpus-trained BPE
tokenizer) at a few sizes and for the demo student: the MiniLM-L6 warm start of ``distillation.ml.demo_student``.

``--quality-seconds S`` instead trains a candidate on the explain task (question and choices -> the teacher's
rationale) for S seconds and prints the text-quality measures of its greedy explanations of 50 dev questions
(every ``--report-every`` steps as well): ``--candidate minilm`` (the demo student, ``--encoder-layers`` and
``--decoder-layers`` of MiniLM) or ``--candidate scratch`` (the from-scratch T5, d_model 128, 2 + 2 layers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillation.ml.demo_student import (
    BasePretraining,
    CorpusDocument,
    DemoStudentSize,
    build_model,
    corpus_documents,
    corpus_tokenizer,
    minilm_folder,
    pretraining_step,
    tokenizer_texts,
)
from distillation.ml.tasks import load_teacher_examples

TIMED_STEPS = 6
WARMUP_STEPS = 2
QUALITY_DEV_QUESTIONS = 50
QUALITY_BATCH = 32
QUALITY_INPUT_TOKENS = 80
QUALITY_TARGET_TOKENS = 40
SCRATCH_VOCABULARY = 2000


def scratch_t5(tokenizer, d_model: int = 128, n_layers: int = 2, n_heads: int = 4, d_ff: int = 512):
    """A T5 from random weights for a corpus-trained tokenizer, with the demo student's generation settings."""
    import torch
    from transformers import T5ForConditionalGeneration

    from distillation.ml.tiny import small_t5_config

    config = small_t5_config(
        tokenizer, d_model=d_model, n_heads=n_heads, d_ff=d_ff, n_layers=n_layers, dropout_rate=0.0
    )
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    model.generation_config.no_repeat_ngram_size = 3
    model.generation_config.repetition_penalty = 1.2
    return model


def time_steps(model, documents, tokenizer, training) -> float:
    """Optimizer steps per second of the base's pre-training step on ``documents``."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        pretraining_step(model, documents, tokenizer, training, step)
        optimizer.step()
        optimizer.zero_grad()
    return TIMED_STEPS / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.environ.get("EVALSITE_DATA_DIR", ""))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidate", choices=["minilm", "scratch"], default="minilm", help="with --quality-seconds")
    parser.add_argument("--quality-seconds", type=float, help="train the explain task this long, then print quality")
    parser.add_argument("--encoder-layers", type=int, default=3, help="MiniLM layers kept as the encoder")
    parser.add_argument("--decoder-layers", type=int, default=2, help="decoder layers, from MiniLM's last ones")
    parser.add_argument("--report-every", type=int, default=0, help="also measure quality every N steps")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: CPU autocast")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: 3e-3 from scratch, 1e-3 MiniLM)")
    args = parser.parse_args()
    import torch

    from distillation.ml.subword import train_subword_tokenizer

    torch.set_num_threads(args.threads)
    if args.quality_seconds:
        teacher_dir = Path(args.data_dir) / "teacher"
        if args.candidate == "minilm":
            candidate = MiniLmWarmStart(DemoStudentSize(args.encoder_layers, args.decoder_layers))
        else:
            candidate = DemoSizeFromScratch()
        if args.lr:
            candidate.learning_rate = args.lr
        quality_after(
            teacher_dir, args.quality_seconds, candidate, report_every=args.report_every, precision=args.precision
        )
        return
    examples = load_teacher_examples(Path(args.data_dir) / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=2000)
    documents = corpus_documents(examples)
    started = time.perf_counter()
    tokenizer = train_subword_tokenizer(tokenizer_texts(documents), vocab_size=SCRATCH_VOCABULARY)
    print(f"tokenizer ({SCRATCH_VOCABULARY:,} pieces, {len(documents)} texts): {time.perf_counter() - started:.1f} s")
    precision = args.precision
    print(f"base pre-training steps of 16 (the four task formats), {precision}, {args.threads} threads")
    print("model                                           params   steps/s   one padded batch")
    for d_model, n_layers, n_heads, d_ff in ((128, 2, 4, 512), (256, 2, 4, 1024), (384, 4, 6, 1024)):
        model = scratch_t5(tokenizer, d_model, n_layers, n_heads, d_ff)
        print_rates(f"T5 from scratch d={d_model} layers={n_layers} ff={d_ff}", model, documents, tokenizer, precision)
    size = DemoStudentSize()
    model, minilm_tokenizer = MiniLmWarmStart(size).build(documents)
    print_rates(
        f"MiniLM warm start {size.encoder_layers} + {size.decoder_layers} (demo)",
        model,
        documents,
        minilm_tokenizer,
        precision,
    )


def print_rates(name: str, model, documents, tokenizer, precision: str) -> None:
    """Steps per second as the base trains (length-sorted chunks), and with each step one padded batch."""
    n = sum(p.numel() for p in model.parameters())
    chunked = time_steps(model, documents, tokenizer, BasePretraining(precision=precision))
    padded = time_steps(model, documents, tokenizer, BasePretraining(precision=precision, max_chunks=1))
    print(f"{name:<46}  {n / 1e6:5.1f}M   {chunked:6.2f}    {padded:6.2f}")


class DemoSizeFromScratch:
    """A small T5 with a corpus-trained BPE tokenizer, from random weights."""

    batch_size, learning_rate = QUALITY_BATCH, 3e-3

    def build(self, corpus: list[CorpusDocument]):
        from distillation.ml.subword import train_subword_tokenizer

        tokenizer = train_subword_tokenizer(tokenizer_texts(corpus), vocab_size=SCRATCH_VOCABULARY)
        return scratch_t5(tokenizer), tokenizer


class MiniLmWarmStart:
    """The demo student before its base pre-training: MiniLM's layers, its word pieces cut to the corpus's."""

    batch_size, learning_rate = 16, 1e-3

    def __init__(self, size: DemoStudentSize):
        self.size = size

    def build(self, corpus: list[CorpusDocument]):
        folder = minilm_folder()
        tokenizer, kept = corpus_tokenizer(folder, tokenizer_texts(corpus), self.size.min_piece_count)
        original = json.loads((folder / "config.json").read_text())["vocab_size"]
        print(f"word pieces kept: {len(kept):,} of MiniLM's {original:,}")
        return build_model(folder, tokenizer, kept, self.size, 0), tokenizer


def quality_after(
    teacher_dir: Path, seconds: float, candidate, *, report_every: int = 0, precision: str = "fp32"
) -> None:
    """Train the candidate on the explain task for ``seconds``, then measure its explanations of dev questions."""
    import numpy as np
    import torch

    from distillation.ml.inference import _pad
    from distillation.ml.tasks import TaskKind, task_input
    from distillation.ml.text import first_line
    from distillation.ml.text_quality import vocabulary

    train = load_teacher_examples(teacher_dir / "cqa-llama2-13b-train.jsonl.gz")
    dev = load_teacher_examples(teacher_dir / "cqa-llama2-13b-validation.jsonl.gz", limit=QUALITY_DEV_QUESTIONS)
    model, tokenizer = candidate.build([CorpusDocument(e.question, e.choices, e.rationale, e.answer) for e in train])
    print(f"{type(candidate).__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    sources = [task_input(TaskKind.EXPLAIN, e.question, e.choices) for e in train]
    targets = [first_line(e.rationale) for e in train]
    corpus_words = vocabulary(sources + targets)
    inputs = tokenizer(sources, truncation=True, max_length=QUALITY_INPUT_TOKENS)["input_ids"]
    labels = tokenizer(targets, truncation=True, max_length=QUALITY_TARGET_TOKENS)["input_ids"]
    peak, batch_size = candidate.learning_rate, candidate.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    rng = np.random.default_rng(0)
    order, position, step, losses, training_seconds = rng.permutation(len(inputs)), 0, 0, [], 0.0
    model.train()
    while training_seconds < seconds:
        started = time.perf_counter()
        if position + batch_size > len(order):
            order, position = rng.permutation(len(inputs)), 0
        picked = order[position : position + batch_size]
        position += batch_size
        input_ids, attention_mask = _pad([inputs[i] for i in picked], tokenizer.pad_token_id, left=False)
        for group in optimizer.param_groups:
            group["lr"] = peak * min(1.0, (step + 1) / 30)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                labels=_pad([labels[i] for i in picked], -100, left=False)[0],
            ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        step += 1
        training_seconds += time.perf_counter() - started
        if report_every and step % report_every == 0:
            quality = measure(model, tokenizer, dev, corpus_words)
            print(f"  step {step} ({training_seconds:.0f} s of training): loss {np.mean(losses[-50:]):.2f}, {quality}")
    print(
        f"{step} steps of {batch_size} in {training_seconds:.0f} s ({step / training_seconds:.2f} steps/s), "
        f"loss of the last 50 {np.mean(losses[-50:]):.2f}"
    )
    print(measure(model, tokenizer, dev, corpus_words, samples=3))


def measure(model, tokenizer, dev, corpus_words, *, samples: int = 0) -> str:
    """Greedy explanations of the dev questions, their text-quality measures in one line (and a few samples)."""
    import torch

    from distillation.ml.tasks import TaskKind, task_input
    from distillation.ml.text_quality import ExplainedQuestion, text_quality

    model.eval()
    items = []
    with torch.no_grad():
        for first in range(0, len(dev), 25):
            batch = dev[first : first + 25]
            encoded = tokenizer(
                [task_input(TaskKind.EXPLAIN, e.question, e.choices) for e in batch],
                padding=True,
                truncation=True,
                max_length=QUALITY_INPUT_TOKENS,
                return_tensors="pt",
            )
            encoded.pop("token_type_ids", None)
            written = tokenizer.batch_decode(model.generate(**encoded, max_new_tokens=60), skip_special_tokens=True)
            items += [
                ExplainedQuestion(text.strip(), e.question, e.choices) for e, text in zip(batch, written, strict=True)
            ]
    model.train()
    shown = "".join(f"\n  {item.question[:70]}\n    -> {item.explanation}" for item in items[:samples])
    quality = text_quality(items, corpus_words).as_dict()
    figures = ", ".join(
        f"{name} {value:.2f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in quality.items()
        if value is not None
    )
    return figures + shown


if __name__ == "__main__":
    main()
