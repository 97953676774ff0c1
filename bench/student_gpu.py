"""GPU benchmark of a t5-v1_1-base-shaped student (random weights from its config, nothing downloads).

Trains MT+CF at 48 questions a step (192 sequences) for ``--steps`` steps in each ``--precisions`` and reports
step time, tokens/s, peak memory and model FLOPs utilisation; then answers and explains ``--inference-questions``
dev questions in batches (questions/s). ``bench/gpu.sh`` runs it with the paper's settings; on a CPU-only
machine ``--shape tiny --steps 2 --questions 2 --train-questions 60 --inference-questions 4`` checks that it runs.

MFU counts 6 FLOPs per parameter per token on the forward and backward passes (encoder parameters for input
tokens; decoder and output head for target tokens), without attention's quadratic term, over the device's peak
(``--peak-tflops``, default the H100/H200 dense figure for the precision; tf32 for fp32 when matmuls allow it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from students_common import SHAPES, build_shaped_student

from distillation.ml.tasks import Question, load_teacher_examples

PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0}  # H100/H200 SXM, dense


def parameter_split(model_dir: Path) -> tuple[int, int]:
    """(encoder parameters, decoder + output head parameters), the shared embedding counted on neither side."""
    from distillation.ml.students import load_student

    model = load_student(model_dir).model
    encoder = sum(p.numel() for n, p in model.encoder.named_parameters() if "embed_tokens" not in n)
    decoder = sum(p.numel() for n, p in model.decoder.named_parameters() if "embed_tokens" not in n)
    return encoder, decoder + model.lm_head.weight.numel()


def train_once(model_dir: Path, examples, args, precision: str, output_dir: Path) -> dict[str, float]:
    import torch

    from distillation.ml.training import TrainingConfig, train_student

    steps: list[dict[str, float]] = []
    config = TrainingConfig(
        student=str(model_dir),
        method="mtcf",
        max_steps=args.warmup + args.steps,
        batch_size=args.questions,
        max_input_tokens=args.max_tokens,
        max_target_tokens=args.max_tokens,
        precision=precision,
        eval_every=0,
        checkpoint_every=10**9,
        output_dir=str(output_dir),
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_student(
        config,
        examples,
        progress=lambda step, total, stage, metrics: steps.append(metrics) if stage == "training" else None,
    )
    timed = steps[args.warmup :]
    seconds = sum(m["seconds"] for m in timed)
    tokens = sum(m["tokens"] for m in timed)
    return {
        "seconds_per_step": seconds / len(timed),
        "tokens_per_s": tokens / seconds,
        "questions_per_s": args.questions * len(timed) / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan"),
        "tokens_per_step": tokens / len(timed),
    }


def model_flops_per_token(encoder_parameters: int, decoder_parameters: int, input_share: float) -> float:
    """Training FLOPs per (input or target) token: 6 per parameter the token goes through."""
    return 6 * (input_share * encoder_parameters + (1 - input_share) * decoder_parameters)


def input_token_share(model_dir: Path, examples, max_tokens: int) -> float:
    """The share of a step's tokens that are encoder inputs (the rest are targets), over the training tasks."""
    from distillation.ml.collate import tokenize_tasks
    from distillation.ml.students import load_student
    from distillation.ml.tasks import Method, build_task_examples

    student = load_student(model_dir)
    data = tokenize_tasks(
        build_task_examples(examples, Method.MTCF),
        student.tokenizer,
        is_encoder_decoder=True,
        max_input_tokens=max_tokens,
        max_target_tokens=max_tokens,
    )
    inputs, targets = data.inputs.lengths.sum(), data.targets.lengths.sum()
    return float(inputs / (inputs + targets))


def inference_rate(model_dir: Path, questions, args) -> float:
    """Dev questions answered and explained per second (two batched greedy passes, as ``evaluate_student``)."""
    from distillation.ml.inference import InferenceConfig, evaluate_student

    config = InferenceConfig(
        batch_size=args.inference_batch_size,
        max_input_tokens=args.max_tokens,
        max_answer_tokens=args.max_answer_tokens,
        max_explanation_tokens=args.max_tokens,
    )
    started = time.perf_counter()
    evaluate_student(model_dir, questions, config=config)
    return len(questions) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EVALSITE_DATA_DIR", ""))
    parser.add_argument("--shape", choices=sorted(SHAPES), default="t5-v1_1-base")
    parser.add_argument("--questions", type=int, default=48, help="questions per step (x4 sequences under MT+CF)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--max-answer-tokens", type=int, default=64)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak for MFU (default: H100/H200 figures)")
    parser.add_argument("--train-questions", type=int, help="only the first N training questions (default: all 9,741)")
    parser.add_argument("--inference-questions", type=int, default=1221)
    parser.add_argument("--inference-batch-size", type=int, default=128)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("give --data-dir or set EVALSITE_DATA_DIR to the reference data")

    import torch

    data = Path(args.data_dir)
    examples = load_teacher_examples(data / "teacher" / "cqa-llama2-13b-train.jsonl.gz", limit=args.train_questions)
    dev = load_teacher_examples(data / "teacher" / "cqa-llama2-13b-validation.jsonl.gz")
    questions = [Question(e.source_id, e.question, e.choices, e.answer) for e in dev[: args.inference_questions]]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (dry run: figures mean nothing)"
    report: dict[str, object] = {"device": device, "shape": args.shape, "questions_per_step": args.questions}
    with tempfile.TemporaryDirectory() as scratch:
        model_dir, n_parameters, _ = build_shaped_student(args.shape, Path(scratch) / "student")
        encoder, decoder = parameter_split(model_dir)
        share = input_token_share(model_dir, examples[:2000], args.max_tokens)
        flops_per_token = model_flops_per_token(encoder, decoder, share)
        report["parameters"] = n_parameters
        print(f"{args.shape}-shaped T5, {n_parameters / 1e6:.0f}M parameters, on {device}")
        shown = f"{args.questions} questions ({4 * args.questions} sequences)"
        print(f"MT+CF, {shown} a step, tokens cut at {args.max_tokens}")
        print(f"{'precision':<9} {'s/step':>8} {'tokens/s':>10} {'questions/s':>12} {'peak GiB':>9} {'MFU':>7}")
        for precision in [p for p in args.precisions.split(",") if p]:
            figures = train_once(model_dir, examples, args, precision, Path(scratch) / precision)
            peak_name = "tf32" if precision == "fp32" and torch.backends.cuda.matmul.allow_tf32 else precision
            peak = (args.peak_tflops or PEAK_TFLOPS[peak_name]) * 1e12
            figures["mfu"] = figures["tokens_per_s"] * flops_per_token / peak
            report[precision] = figures
            print(
                f"{precision:<9} {figures['seconds_per_step']:>8.3f} {figures['tokens_per_s']:>10.0f} "
                f"{figures['questions_per_s']:>12.1f} {figures['peak_memory_gib']:>9.1f} {100 * figures['mfu']:>6.1f}%"
            )
        rate = inference_rate(model_dir, questions, args)
        report["inference_questions_per_s"] = rate
        print(
            f"inference: {len(questions)} dev questions (answer and explanation, greedy, batches of "
            f"{args.inference_batch_size}): {rate:.1f} questions/s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
