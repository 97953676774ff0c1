"""Loading and saving student models: by path, hub id, ``tiny`` (tiny T5) or ``tiny-causal`` (tiny GPT-2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillation.ml.text import check_model_location
from distillation.ml.tiny import TINY_ID

TINY_CAUSAL_ID = "tiny-causal"
STUDENT_METADATA_FILE = "evalsite_student.json"


@dataclass
class Student:
    """A model with its tokenizer; ``is_encoder_decoder`` tells T5-like students from decoder-only ones."""

    model: Any
    tokenizer: Any
    is_encoder_decoder: bool
    name: str


def load_student(name_or_path: str | Path, *, seed: int = 0) -> Student:
    """A student by local path or hub id (loaded with ``from_pretrained``), or a tiny one built from a config.

    ``seed`` only matters for the tiny students, whose weights are initialised at random.
    """
    name = str(name_or_path)
    if name == TINY_ID:
        from distillation.ml.tiny import build_tiny_seq2seq

        model, tokenizer = build_tiny_seq2seq(seed)
        return _ready(Student(model, tokenizer, True, name))
    if name == TINY_CAUSAL_ID:
        from distillation.ml.tiny import build_tiny_causal_lm

        model, tokenizer = build_tiny_causal_lm(seed)
        return _ready(Student(model, tokenizer, False, name))

    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    check_model_location(name)
    config = AutoConfig.from_pretrained(name)
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    model_class = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
    model = model_class.from_pretrained(name, config=config)
    tokenizer = AutoTokenizer.from_pretrained(name)
    return _ready(Student(model, tokenizer, encoder_decoder, name))


def _ready(student: Student) -> Student:
    """Give decoder-only tokenizers a pad token (GPT-2 has none); padding is always masked, so any id will do."""
    tokenizer = student.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if student.model.config.pad_token_id is None:
        student.model.config.pad_token_id = tokenizer.pad_token_id
    return student


def save_student(student: Student, directory: Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Save model, tokenizer and our metadata (method, training config) so ``load_student(directory)`` works."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    student.model.save_pretrained(directory)
    student.tokenizer.save_pretrained(directory)
    write_student_metadata(directory, {"is_encoder_decoder": student.is_encoder_decoder, **(metadata or {})})
    return directory


def write_student_metadata(directory: Path, metadata: dict[str, Any]) -> None:
    (Path(directory) / STUDENT_METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))


def read_student_metadata(directory: Path) -> dict[str, Any]:
    """What ``save_student`` recorded next to a model; empty for a model saved elsewhere."""
    path = Path(directory) / STUDENT_METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
