"""Import CommonsenseQA questions from a folder of JSONL files (ours or the official format), or the hub."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from distillation import jobs
from evalsite.commands import run_job_with_progress
from evalsite.errors import DataFileError

HUB_DATASET_ID = "tau/commonsense_qa"


class Command(BaseCommand):
    help = "Import CommonsenseQA train and validation questions. A second run stores nothing new."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--path", help="Folder with train.jsonl and validation.jsonl (default: $EVALSITE_DATA_DIR/cqa)."
        )
        source.add_argument(
            "--from-hub", action="store_true", help="Download with the `datasets` library (needs network)."
        )
        parser.add_argument("--dataset", default="cqa", help="Dataset slug to store under (default: cqa).")
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        if options["from_hub"]:
            with tempfile.TemporaryDirectory() as tmp:
                path = export_hub_dataset(Path(tmp))
                result = self._import(str(path), options)
        else:
            result = self._import(self._resolve_path(options["path"]), options)
        for split, counts in result.items():
            self.stdout.write(f"{split}: {counts['created']} questions stored, {counts['skipped']} already there")

    def _resolve_path(self, path: str | None) -> str:
        if path:
            return path
        data_dir = os.environ.get("EVALSITE_DATA_DIR", "")
        if not data_dir:
            raise CommandError("Give --path DIR (or set EVALSITE_DATA_DIR, or use --from-hub when online).")
        return str(Path(data_dir) / "cqa")

    def _import(self, path: str, options) -> dict:
        job = run_job_with_progress(
            kind="import_cqa",
            function=jobs.import_cqa,
            params={"path": path, "dataset_slug": options["dataset"]},
            quiet=options["quiet"],
            expected=(DataFileError,),
        )
        return job.result


def export_hub_dataset(directory: Path) -> Path:
    """Write the hub's CommonsenseQA as our JSONL files, or explain why it cannot."""
    import json

    try:
        from datasets import load_dataset

        hub = load_dataset(HUB_DATASET_ID)
    except Exception as exc:  # the hub client raises many kinds of network errors
        raise CommandError(
            f"Cannot load {HUB_DATASET_ID} from the Hugging Face hub (offline or unreachable: "
            f"{type(exc).__name__}). Use --path with a local copy instead."
        ) from exc
    for split in ("train", "validation"):
        with open(directory / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for row in hub[split]:
                labels, texts = row["choices"]["label"], row["choices"]["text"]
                answer = texts[labels.index(row["answerKey"])]
                handle.write(
                    json.dumps({"id": row["id"], "question": row["question"], "choices": texts, "answer": answer})
                    + "\n"
                )
    return directory
