"""Analyse ratings (of a study in the database, or from a CSV file) and write the report files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services import analysis

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
        parser.add_argument(
            "--no-exclusions",
            action="store_true",
            help="--study: keep annotators who failed an attention check, were too fast or straight-lined.",
        )

    def handle(self, *args, **options):
        tidy, study_options = self._ratings(options)
        run_options: dict[str, Any] = {
            **study_options,
            "models": _names(options["models"]),
            "n_boot": options["n_boot"],
            "seed": options["seed"],
        }
        if options["covariates"] is not None:
            run_options["covariates"] = _names(options["covariates"])
        if options["reference"]:
            run_options["reference"] = options["reference"]
        out_dir = Path(options["out"])
        try:
            report, written = analysis.analysis_write_files(
                tidy, out_dir, figures=not options["no_figures"], progress=self._progress, **run_options
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self._print_summary(report)
        self.stdout.write(f"Wrote {', '.join(written)} to {out_dir}")

    def _ratings(self, options) -> tuple[Any, dict[str, Any]]:
        from annotations.analysis.io import load_tidy_csv, load_wide_csv

        if options["study"]:
            study = Study.objects.filter(slug=options["study"]).first()
            if study is None:
                raise CommandError(f"no study {options['study']!r}")
            tidy = analysis.study_ratings_frame(study)
            if tidy.empty:
                raise CommandError(f"study {study.slug!r} has no ratings from completed screens yet")
            return tidy, analysis.study_analysis_options(study, tidy, exclusions=not options["no_exclusions"])
        path = Path(options["input"])
        if not path.is_file():
            raise CommandError(f"no file {path}")
        try:
            if not options["wide"]:
                return load_tidy_csv(path), {}
            if not options["constructs"]:
                raise CommandError("--wide needs --constructs")
            return load_wide_csv(
                path,
                annotator=options["annotator"],
                explanation=options["explanation"],
                condition=options["condition"],
                constructs=_names(options["constructs"]),
                item=options["item"],
            ), {}
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _progress(self, done: int, total: int | None, stage: str = "", message: str = "") -> None:
        self.stderr.write(f"[{done}/{total}] {stage}")

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
