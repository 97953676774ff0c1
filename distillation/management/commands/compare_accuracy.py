"""Compare student accuracy between conditions: IQR outliers, two-way ANOVA, Tukey-Kramer per size, a chart."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from distillation.models import StudentRun


class Command(BaseCommand):
    help = "Accuracy statistics per model size, from the paper's experiment.csv or from evaluated student runs."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--input", help="A CSV with the paper's columns (run, test accuracy, target_rationale, ...)."
        )
        source.add_argument("--from-db", action="store_true", help="Use the evaluated student runs.")
        parser.add_argument("--out", help="Folder for accuracy.json and accuracy.png.")

    def handle(self, *args, **options):
        from distillation.ml import accuracy_stats

        if options["input"]:
            path = Path(options["input"])
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            try:
                frame = accuracy_stats.load_experiment_csv(path)
            except (KeyError, ValueError) as exc:
                raise CommandError(f"{path}: {exc}") from exc
        else:
            rows = [
                {
                    "method": r.method,
                    "data": r.training_data,
                    "size": r.model_size or r.base_checkpoint,
                    "seed": r.seed,
                    "accuracy": r.metrics["accuracy"],
                }
                for r in StudentRun.objects.filter(status=StudentRun.Status.EVALUATED)
                if r.metrics.get("accuracy") is not None
            ]
            if not rows:
                raise CommandError("no evaluated student runs yet")
            frame = accuracy_stats.runs_to_frame(rows)
        comparison = accuracy_stats.compare_accuracy(frame)
        self.stdout.write(comparison.format_table())
        if options["out"]:
            out = Path(options["out"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "accuracy.json").write_text(json.dumps(comparison.to_dict(), indent=2), encoding="utf-8")
            accuracy_stats.plot_accuracy(comparison, out / "accuracy.png")
            self.stdout.write(f"Wrote {out / 'accuracy.json'} and {out / 'accuracy.png'}.")
