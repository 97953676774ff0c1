"""Benchmark of the student-training core on a tiny T5 on CPU: throughput, multitask overhead, batched inference.

Run: ``.venv/bin/python bench/training.py [--data-dir DIR] [--threads N]`` (DIR defaults to EVALSITE_DATA_DIR).
Prints one table. Bounded to well under three minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distillation.ml.tasks import Method, TaskKind, TeacherExample, build_task_examples, load_teacher_examples

MAX_INPUT_TOKENS = 256
MAX_TARGET_TOKENS = 128
BATCH_SIZE = 16
TIMED_STEPS = 8
WARMUP_STEPS = 2


@dataclass
class Row:
    measure: str
    value: float
    unit: str
    note: str = ""


def train_throughput(method: str, examples: list[TeacherExample]) -> tuple[float, float]:
    """Mean examples/s and tokens/s of ``train_student``'s steps after warm-up (the step timings it reports)."""
    from distillation.ml.training import TrainingConfig, train_student

    step_metrics: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as output_dir:
        config = TrainingConfig(
            student="tiny",
            method=method,
            max_steps=WARMUP_STEPS + TIMED_STEPS,
            batch_size=BATCH_SIZE,
            max_input_tokens=MAX_INPUT_TOKENS,
            max_target_tokens=MAX_TARGET_TOKENS,
            checkpoint_every=10_000,
            validation_fraction=0.02,
            output_dir=output_dir,
        )
        train_student(
            config,
            examples,
            progress=lambda step, total, stage, metrics: step_metrics.append(metrics) if stage == "training" else None,
        )
    timed = step_metrics[WARMUP_STEPS:]
    seconds = sum(BATCH_SIZE / m["examples_per_s"] for m in timed)
    tokens = sum(m["tokens_per_s"] * BATCH_SIZE / m["examples_per_s"] for m in timed)
    return BATCH_SIZE * len(timed) / seconds, tokens / seconds


def plain_single_task_seconds_per_token(examples: list[TeacherExample]) -> float:
    """A plain fine-tune: one task ([factual]), the model's own mean loss, the same batching and optimizer."""
    import numpy as np
    import torch

    from distillation.ml.collate import TaskCollator, tokenize_tasks
    from distillation.ml.students import load_student
    from distillation.ml.training import LengthGroupedBatches

    student = load_student("tiny", seed=0)
    tasks = [task for task in build_task_examples(examples, Method.CF) if task.kind is TaskKind.FACTUAL]
    data = tokenize_tasks(
        tasks,
        student.tokenizer,
        is_encoder_decoder=True,
        max_input_tokens=MAX_INPUT_TOKENS,
        max_target_tokens=MAX_TARGET_TOKENS,
    )
    batches = LengthGroupedBatches(data.sequence_lengths(), BATCH_SIZE, seed=0)
    collator = TaskCollator(student.tokenizer.pad_token_id, student.model.config.decoder_start_token_id)
    model = student.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    seconds, tokens = 0.0, 0
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        started = time.perf_counter()
        batch = collator(data, np.asarray(batches.batch(step)))
        loss = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            use_cache=False,
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= WARMUP_STEPS:
            seconds += time.perf_counter() - started
            tokens += batch["n_tokens"]
    return seconds / tokens


def inference_rates(examples: list[TeacherExample], n_questions: int = 24) -> tuple[float, float]:
    """Explanations per second generated in batches of 8 and one at a time (64 new tokens each)."""
    import torch

    from distillation.ml.inference import generate_token_ids
    from distillation.ml.students import load_student
    from distillation.ml.tasks import task_input

    student = load_student("tiny", seed=0)
    # Random weights of this scale never emit eos, so every explanation is the full 64 tokens.
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in student.model.parameters():
            parameter.normal_(0.0, 0.5)
    inputs = [task_input(TaskKind.EXPLAIN, e.question, e.choices) for e in examples[:n_questions]]
    settings = {"max_input_tokens": MAX_INPUT_TOKENS, "max_new_tokens": 64}
    generate_token_ids(student, inputs[:2], batch_size=2, **settings)  # warm-up
    started = time.perf_counter()
    generate_token_ids(student, inputs, batch_size=8, **settings)
    batched = n_questions / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in inputs:
        generate_token_ids(student, [text], batch_size=1, **settings)
    alone = n_questions / (time.perf_counter() - started)
    return batched, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EVALSITE_DATA_DIR", ""))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 avoids oversubscribing shared cores)"
    )
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("give --data-dir or set EVALSITE_DATA_DIR to the reference data")

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    examples = load_teacher_examples(Path(args.data_dir) / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=256)

    rows: list[Row] = []
    seconds_per_token: dict[str, float] = {}
    for method in ("mt", "cf", "mtcf"):
        examples_per_s, tokens_per_s = train_throughput(method, examples)
        seconds_per_token[method] = 1 / tokens_per_s
        rows.append(Row(f"train {method}: sequences/s", examples_per_s, "seq/s", f"batch {BATCH_SIZE}"))
        rows.append(Row(f"train {method}: tokens/s", tokens_per_s, "tok/s", "non-padding input+target"))
    plain = plain_single_task_seconds_per_token(examples)
    rows.append(Row("plain single-task fine-tune: tokens/s", 1 / plain, "tok/s", "[factual] only, model's own loss"))
    rows.append(Row("MT+CF time per token / plain", seconds_per_token["mtcf"] / plain, "ratio", "target <= 1.10"))
    batched, alone = inference_rates(examples)
    rows.append(Row("inference: explanations/s batched (8)", batched, "expl/s", "64 new tokens each"))
    rows.append(Row("inference: explanations/s one at a time", alone, "expl/s"))
    rows.append(Row("inference: batched speed-up", batched / alone, "x"))

    width = max(len(row.measure) for row in rows)
    print(f"tiny T5 on CPU, {args.threads} thread(s), inputs <= {MAX_INPUT_TOKENS}, targets <= {MAX_TARGET_TOKENS}")
    print(f"{'measure':<{width}}  {'value':>10}  {'unit':<7} note")
    for row in rows:
        print(f"{row.measure:<{width}}  {row.value:>10.2f}  {row.unit:<7} {row.note}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
