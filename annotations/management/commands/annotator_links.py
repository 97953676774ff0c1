"""Print signed per-annotator invitation links for a study."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from annotations.models import Study
from annotations.tokens import invite_token


class Command(BaseCommand):
    help = "Print N signed invitation links (one per annotator) for a study."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True)
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--label-prefix", default="annotator", help="Labels become annotator ids.")

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        base = settings.EVALSITE_PUBLIC_URL.rstrip("/")
        for _ in range(options["count"]):
            label = f"{options['label_prefix']}-{secrets.token_hex(4)}"
            token = invite_token(study_id=study.pk, label=label)
            self.stdout.write(f"{label}\t{base}{reverse('annotations:invite', args=[study.slug, token])}")
