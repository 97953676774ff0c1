"""Shared fixtures: the reference data directory, users and factories built with the real services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def artifacts_in_tmp(settings, tmp_path: Path) -> None:
    """Checkpoints and reports of a test go to its own folder, not the repository's var/."""
    settings.EVALSITE_ARTIFACTS_DIR = tmp_path / "artifacts"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The reference data named by EVALSITE_DATA_DIR; the suite needs it and says so when it is missing."""
    raw = os.environ.get("EVALSITE_DATA_DIR", "")
    if not raw:
        pytest.fail("EVALSITE_DATA_DIR is not set: point it at the reference data.")
    path = Path(raw).resolve()
    if not (path / "cqa").is_dir():
        pytest.fail(f"EVALSITE_DATA_DIR={raw} does not hold the reference data (no cqa/ folder).")
    return path


@pytest.fixture
def teacher_data(data_dir: Path, tmp_path: Path) -> None:
    """48 training questions with the paper's teacher outputs, and 8 dev questions (for student tests)."""
    import gzip

    from distillation.datafiles import read_questions
    from distillation.services.imports import dataset_get_or_create, questions_import, teacher_outputs_import

    dataset = dataset_get_or_create(slug="cqa")
    questions_import(dataset=dataset, split="train", records=read_questions(data_dir / "cqa" / "train.jsonl")[:48])
    questions_import(
        dataset=dataset, split="validation", records=read_questions(data_dir / "cqa" / "validation.jsonl")[:8]
    )
    subset = tmp_path / "teacher-train-48.jsonl"
    with gzip.open(data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz", "rt", encoding="utf-8") as source:
        subset.write_text("".join(next(source) for _ in range(48)), encoding="utf-8")
    teacher_outputs_import(path=str(subset), teacher_name="llama2-13b")
