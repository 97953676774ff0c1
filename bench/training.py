"""Benchmark of student training at a realistic width (a t5-v1_1-small-shaped T5 from its config, random weights).

Prints each method's questions/s and tokens/s (steps of whole questions, every task of each), and MT+CF's cost
per real token against a plain single-task fine-tune of the same model on the same kind of data (goal <= 1.10).
Run: ``.venv/bin/python bench/training.py [--data-dir DIR] [--shape t5-v1_1-small] [--questions 4] [--steps 3]``.
On the shared two-core development machine the default takes a few minutes; ``--shape tiny`` is a smoke test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from students_common import SHAPES, build_shaped_student, time_training

from distillation.ml.tasks import Method, TaskKind, build_task_examples, load_teacher_examples


def single_task_seconds_per_token(
    model_dir: Path, examples, *, questions: int, steps: int, warmup: int, max_tokens: int
):
    """A plain fine-tune: one task ([factual]) in batches of sequences, the model's own mean loss, AdamW."""
    import numpy as np
    import torch

    from distillation.ml.collate import TaskCollator, tokenize_tasks
    from distillation.ml.students import load_student
    from distillation.ml.training import LengthGroupedBatches

    student = load_student(model_dir)
    tasks = [task for task in build_task_examples(examples, Method.CF) if task.kind is TaskKind.FACTUAL]
    data = tokenize_tasks(
        tasks, student.tokenizer, is_encoder_decoder=True, max_input_tokens=max_tokens, max_target_tokens=max_tokens
    )
    # As many sequences a step as MT+CF has (4 per question), so the batches are the same size.
    batches = LengthGroupedBatches(data.sequence_lengths(), 4 * questions, seed=0)
    collator = TaskCollator(student.tokenizer.pad_token_id, student.model.config.decoder_start_token_id)
    model = student.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    seconds, tokens = 0.0, 0
    for step in range(warmup + steps):
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
        if step >= warmup:
            seconds += time.perf_counter() - started
            tokens += batch["n_tokens"]
    return seconds / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EVALSITE_DATA_DIR", ""))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="t5-v1_1-small")
    parser.add_argument("--questions", type=int, default=4, help="questions per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("give --data-dir or set EVALSITE_DATA_DIR to the reference data")

    import torch

    from distillation.ml.training import TrainingConfig

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    examples = load_teacher_examples(Path(args.data_dir) / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=400)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir, n_parameters, _ = build_shaped_student(args.shape, Path(scratch) / "student")
        results = {}
        for method in ("mt", "cf", "mtcf"):
            config = TrainingConfig(
                student=str(model_dir),
                method=method,
                max_steps=args.warmup + args.steps,
                batch_size=args.questions,
                max_input_tokens=args.max_tokens,
                max_target_tokens=args.max_tokens,
                eval_every=0,
                checkpoint_every=10**9,
                output_dir=str(Path(scratch) / method),
            )
            results[method] = time_training(config, examples, args.warmup)
        plain = single_task_seconds_per_token(
            model_dir,
            examples,
            questions=args.questions,
            steps=args.steps,
            warmup=args.warmup,
            max_tokens=args.max_tokens,
        )

    print(
        f"{args.shape}-shaped T5 ({n_parameters / 1e6:.0f}M parameters, random weights, byte tokens), CPU, "
        f"{args.threads} thread(s), {args.questions} questions a step, tokens cut at {args.max_tokens}"
    )
    print(f"{'method':<8} {'questions/s':>12} {'tokens/s':>10} {'s/step':>8} {'s per 1k tokens':>16}")
    for method, times in results.items():
        print(
            f"{method:<8} {times.questions_per_s:>12.2f} {times.tokens_per_s:>10.0f} {times.seconds_per_step:>8.2f} "
            f"{1000 / times.tokens_per_s:>16.3f}"
        )
    print(
        f"{'single':<8} {'':>12} {1 / plain:>10.0f} {'':>8} {1000 * plain:>16.3f}  ([factual] only, model's own loss)"
    )
    ratio = (1 / results["mtcf"].tokens_per_s) / plain
    print(f"MT+CF cost per real token / single-task: {ratio:.2f}x (goal <= 1.10)")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
