"""Analyse ratings (of a study in the database, or from a CSV file) and write the report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotations.jobs.analysis import analyze_ratings_files
from annotations.models import Study
from annotations.services import analysis
from evalsite.commands import run_job_with_progress

KEY_MODELS = ("lmm:Quality", "paper_ols:Quality")
# The default set; annotations.analysis.report.MODEL_KINDS (not imported here: it loads pandas and matplotlib).
DEFAULT_MODELS = "lmm,clmm,ols,ordinal"


def _names(raw: str | None) -> list[str]:
    return [name.strip() for name in (raw or "").split(",") if name.strip()]


class Command(BaseCommand):
    help = (
        "Analyse ratings and write report.json, report.html, figures and ratings_tidy.csv to --out. "
        "Ratings come from a study (--study) or a CSV file (--input), tidy or, with --wide, one row per judgement."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--study", help="Study slug: its ratings from completed screens.")
        source.add_argument("--input", help="CSV file of ratings.")
        parser.add_argument("--out", required=True, help="Folder to write the report files to.")
        parser.add_argument("--wide", action="store_true", help="The CSV has one column per construct.")
        parser.add_argument("--annotator", default="annotator_id", help="Wide CSV: the annotator column.")
        parser.add_argument("--explanation", default="explanation_id", help="Wide CSV: the explanation column.")
        parser.add_argument("--condition", default="condition", help="Wide CSV: the condition column.")
        parser.add_argument("--constructs", help="Wide CSV: construct columns, comma-separated.")
        parser.add_argument("--item", help="Wide CSV: the item column (default: the explanation column).")
        parser.add_argument("--reference", default="", help="Reference condition (default: the first, sorted).")
        parser.add_argument(
            "--covariates",
            help="Covariate columns, comma-separated, for every model "
            f"(default for --study: {analysis.LENGTH}; for --input: none).",
        )
        parser.add_argument("--models", default=DEFAULT_MODELS, help="Which models to fit, comma-separated.")
        parser.add_argument("--n-boot", type=int, default=analysis.DEFAULT_N_BOOT, help="Bootstrap replicates.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-figures", action="store_true", help="Skip the figures (faster).")
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")
        parser.add_argument(
            "--no-exclusions",
            action="store_true",
            help="--study: keep annotators who failed an attention check, were too fast or straight-lined.",
        )

    def handle(self, *args, **options):
        run_options: dict[str, Any] = {
            "models": _names(options["models"]),
            "n_boot": options["n_boot"],
            "seed": options["seed"],
        }
        if options["covariates"] is not None:
            run_options["covariates"] = _names(options["covariates"])
        if options["reference"]:
            run_options["reference"] = options["reference"]
        params: dict[str, Any] = {
            "out_dir": str(Path(options["out"])),
            "exclusions": not options["no_exclusions"],
            "figures": not options["no_figures"],
            "options": run_options,
        }
        if options["study"]:
            if not Study.objects.filter(slug=options["study"]).exists():
                raise CommandError(f"no study {options['study']!r}")
            params["study_slug"] = options["study"]
        else:
            if not Path(options["input"]).is_file():
                raise CommandError(f"no file {options['input']}")
            params["input_path"] = str(Path(options["input"]).resolve())
            if options["wide"]:
                if not options["constructs"]:
                    raise CommandError("--wide needs --constructs")
                params["wide"] = {
                    "annotator": options["annotator"],
                    "explanation": options["explanation"],
                    "condition": options["condition"],
                    "constructs": _names(options["constructs"]),
                    "item": options["item"],
                }
        job = run_job_with_progress(
            kind=analysis.FILES_JOB_KIND,
            function=analyze_ratings_files,
            params=params,
            quiet=options["quiet"],
            expected=(ValueError, analysis.AnalysisUnavailable),
        )
        out_dir = Path(job.result["out_dir"])
        self._print_summary(json.loads((out_dir / "report.json").read_text(encoding="utf-8")))
        self.stdout.write(f"Wrote {', '.join(job.result['files'])} to {out_dir} (job {job.pk})")

    def _print_summary(self, report: dict[str, Any]) -> None:
        self.stdout.write(
            f"{report['n_ratings']} ratings, {report['n_annotators']} annotators, {report['n_items']} items, "
            f"{report['n_excluded']} ratings excluded; reference {report['settings']['reference']}"
        )
        for model in report["models"]:
            if model["name"] not in KEY_MODELS:
                continue
            self.stdout.write(f"\n{model['name']}  {model['formula']}  (n = {model['n']})")
            self.stdout.write(f"  {'term':<28}{'estimate':>10}{'SE':>9}{'95% CI':>20}{'p':>10}")
            for c in model["coefficients"]:
                interval = f"[{_fixed(c['ci_low'])}, {_fixed(c['ci_high'])}]"
                self.stdout.write(
                    f"  {c['term']:<28}{_fixed(c['estimate']):>10}{_fixed(c['se']):>9}{interval:>20}{_p(c['p']):>10}"
                )
        for warning in report["warnings"]:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))


def _fixed(value: float | None) -> str:
    if value is None:
        return "–"
    # Per-character length effects are tiny: show their digits rather than -0.000.
    return f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
