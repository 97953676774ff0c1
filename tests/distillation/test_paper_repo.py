"""A checkout of the paper's repository as the data folder: its save_to_disk teacher outputs and its layout."""

from __future__ import annotations

import gzip
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from distillation.datafiles import DataFileError
from distillation.models import TeacherOutput
from distillation.paperrepo import PAPER_COUNTERFACTUAL_FIELD, data_folder, read_saved_teacher_records

pytestmark = pytest.mark.django_db
N_ROWS = 12


def shared_rows(data_dir: Path, split: str, n: int) -> list[dict]:
    with gzip.open(data_dir / "teacher" / f"cqa-llama2-13b-{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(next(handle)) for _ in range(n)]
    for row in rows:
        row["critique"] = None  # the paper's consolidated outputs keep no critiques
    return rows


def as_paper_row(row: dict) -> dict:
    paper = {key: row[key] for key in ("id", "question", "choices", "answer")}
    paper["few_shot_positive_rationale"] = row["rationale"]
    paper["few_shot_negative_rationale"] = row["negative_rationale"]
    paper["few_shot_revision"] = row["revision"]
    for number, text in enumerate(row["counterfactual_rationales"], start=1):
        paper[PAPER_COUNTERFACTUAL_FIELD.format(number)] = text
    return paper


def save_shards(rows: list[dict], directory: Path, shards: int = 2) -> Path:
    """The paper's layout: shard_0, shard_1, ... each a ``save_to_disk`` data set."""
    from datasets import Dataset

    per_shard = -(-len(rows) // shards)
    for index in range(shards):
        part = [as_paper_row(row) for row in rows[index * per_shard : (index + 1) * per_shard]]
        Dataset.from_list(part).save_to_disk(str(directory / f"shard_{index}"))
    return directory


def paper_checkout(data_dir: Path, root: Path) -> Path:
    """A small checkout of the paper's repository: questions, two teacher splits, nothing else."""
    cqa = root / "datasets" / "cqa"
    cqa.mkdir(parents=True)
    for split, teacher_split in (("train", "train"), ("validation", "test")):
        rows = shared_rows(data_dir, split, N_ROWS)
        with open(data_dir / "cqa" / f"{split}.jsonl", encoding="utf-8") as handle:
            (cqa / f"{split}.json").write_text("".join(next(handle) for _ in range(N_ROWS)), encoding="utf-8")
        save_shards(rows, root / "llm_outputs" / "consolidated" / f"cqa-llama-{teacher_split}")
    return root


def stored(teacher: str) -> set[tuple]:
    rows = TeacherOutput.objects.filter(run__teacher__name=teacher)
    return set(rows.values_list("question__source_id", "kind", "choice_index", "text", "truncated", "empty"))


def call(*args: str) -> str:
    out = StringIO()
    call_command(*args, "--quiet", stdout=out)
    return out.getvalue()


def test_a_save_to_disk_import_stores_what_the_json_lines_import_of_the_same_rows_stores(data_dir, tmp_path):
    root = paper_checkout(data_dir, tmp_path / "llm-distillation")
    folder = data_folder(root)
    assert folder.layout == "paper" and folder.cqa_dir == root / "datasets" / "cqa"
    call("import_cqa", "--path", str(folder.cqa_dir))
    for split in ("train", "validation"):
        lines = tmp_path / f"{split}.jsonl"
        lines.write_text("".join(json.dumps(row) + "\n" for row in shared_rows(data_dir, split, N_ROWS)))
        call("import_teacher_outputs", "--path", str(lines), "--teacher", "from-json-lines")
        call("import_teacher_outputs", "--path", str(folder.teacher[split]), "--teacher", "from-save-to-disk")
    from_lines, from_disk = stored("from-json-lines"), stored("from-save-to-disk")
    # Per question: rationale, negative rationale, revision, five counterfactuals (no critique in either).
    assert len(from_lines) == 2 * N_ROWS * 8
    assert from_disk == from_lines
    again = call("import_teacher_outputs", "--path", str(folder.teacher["train"]), "--teacher", "from-save-to-disk")
    assert "0 outputs stored" in again


def test_the_reference_layout_is_recognised_and_anything_else_is_a_clear_error(data_dir, tmp_path):
    assert data_folder(data_dir).layout == "reference"
    with pytest.raises(DataFileError, match="datasets/cqa/"):
        data_folder(tmp_path)


def test_a_repeated_id_across_shards_is_refused(data_dir, tmp_path):
    rows = shared_rows(data_dir, "train", 4)
    save_shards(rows + rows[:1], tmp_path / "teacher", shards=2)
    with pytest.raises(DataFileError, match="repeats row 1"):
        read_saved_teacher_records(tmp_path / "teacher")
