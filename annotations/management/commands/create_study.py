"""Create a study (constructs, conditions, settings) from a YAML file."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.services.studies import study_create


class Command(BaseCommand):
    help = "Create a study from a YAML configuration (see docs/study-config.md)."

    def add_arguments(self, parser):
        parser.add_argument("--config", required=True, help="YAML file with the study's settings.")

    def handle(self, *args, **options):
        path = Path(options["config"])
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"{path}: cannot read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise CommandError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(config, dict):
            raise CommandError(f"{path}: expected a mapping of study settings")
        try:
            study = study_create(config=config)
        except ValidationError as exc:
            raise CommandError(f"{path}: {'; '.join(exc.messages)}") from exc
        constructs = ", ".join(study.constructs.values_list("name", flat=True))
        self.stdout.write(f"Created study {study.slug} ({study.mode}; constructs: {constructs}).")
