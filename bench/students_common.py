"""Shared by the student benchmarks: T5 students of a real width built from a config, and step timings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Shapes of public T5 v1.1 checkpoints (their config.json), built here with random weights: nothing downloads.
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4, "vocab_size": 384},
    "t5-v1_1-small": {"d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8, "num_heads": 6, "vocab_size": 32128},
    "t5-v1_1-base": {"d_model": 768, "d_kv": 64, "d_ff": 2048, "num_layers": 12, "num_heads": 12, "vocab_size": 32128},
    "t5-v1_1-large": {
        "d_model": 1024,
        "d_kv": 64,
        "d_ff": 2816,
        "num_layers": 24,
        "num_heads": 16,
        "vocab_size": 32128,
    },
}


@dataclass
class StepTimes:
    """What ``train_student`` reported for its timed steps (after warm-up)."""

    seconds: float
    tokens: float
    questions: int
    steps: int

    @property
    def questions_per_s(self) -> float:
        return self.questions / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps


def build_shaped_student(shape: str, directory: Path, seed: int = 0) -> tuple[Path, int, int]:
    """Save a T5 v1.1-shaped student with random weights and the byte tokenizer (the real SentencePiece one would
    need a download) to ``directory``; returns it, the parameter count, and the non-embedding parameter count."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from distillation.ml.students import Student, save_student
    from distillation.ml.tiny import build_byte_tokenizer, untie_output_head

    tokenizer = build_byte_tokenizer()
    config = T5Config(
        **SHAPES[shape],
        num_decoder_layers=SHAPES[shape]["num_layers"],
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    untie_output_head(model)
    save_student(Student(model, tokenizer, True, shape), directory, metadata={"method": "mtcf"})
    n_parameters = sum(p.numel() for p in model.parameters())
    embeddings = model.shared.weight.numel()
    return directory, n_parameters, n_parameters - embeddings


def time_training(config, examples, warmup: int) -> StepTimes:
    """Run ``train_student`` (the real code path) and sum the step times it reports after ``warmup`` steps."""
    from distillation.ml.training import train_student

    steps: list[dict[str, float]] = []
    train_student(
        config,
        examples,
        progress=lambda step, total, stage, metrics: steps.append(metrics) if stage == "training" else None,
    )
    timed = steps[warmup:]
    return StepTimes(
        seconds=sum(m["seconds"] for m in timed),
        tokens=sum(m["tokens"] for m in timed),
        questions=config.batch_size * len(timed),
        steps=len(timed),
    )
