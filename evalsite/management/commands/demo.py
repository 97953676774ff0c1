"""The main job on embedded defaults: set up the database, import the data, create an admin and serve."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Run the demo: migrate, import CommonsenseQA and teacher outputs, create an admin, start the server."

    def add_arguments(self, parser):
        parser.add_argument(
            "--data-dir",
            default=os.environ.get("EVALSITE_DATA_DIR", ""),
            help="Reference data folder (default: $EVALSITE_DATA_DIR).",
        )
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="Set everything up, print the URLs, and exit.")

    def handle(self, *args, **options):
        data_dir = self._data_dir(options["data_dir"])
        self._step("Migrating the database")
        call_command("migrate", "--noinput", verbosity=0)
        self._step("Importing CommonsenseQA")
        call_command("import_cqa", "--path", str(data_dir / "cqa"), stdout=self.stdout)
        for split in ("train", "validation"):
            teacher_file = data_dir / "teacher" / f"cqa-llama2-13b-{split}.jsonl.gz"
            if teacher_file.is_file():
                self._step(f"Importing the paper's teacher outputs ({split})")
                call_command(
                    "import_teacher_outputs", "--path", str(teacher_file), "--teacher", "llama2-13b", stdout=self.stdout
                )
        password = self._ensure_admin()
        base = f"http://127.0.0.1:{options['port']}"
        self._step("Ready")
        self.stdout.write(f"  admin:    {base}/admin/  (user {ADMIN_USERNAME}, password {password})")
        self.stdout.write(f"  jobs:     {base}/admin/evalsite/job/")
        if options["no_serve"]:
            return
        call_command("runserver", f"127.0.0.1:{options['port']}", "--noreload")

    def _data_dir(self, raw: str) -> Path:
        if not raw:
            raise CommandError(
                "No data: set EVALSITE_DATA_DIR (or --data-dir) to the reference data folder (with cqa/ and teacher/)."
            )
        path = Path(raw)
        if not (path / "cqa").is_dir():
            raise CommandError(f"{path} has no cqa/ folder; point EVALSITE_DATA_DIR at the reference data.")
        return path

    def _ensure_admin(self) -> str:
        """Create the demo admin once; its password is kept under var/ so a rerun can print it again."""
        password_file = Path(settings.VAR_DIR) / "demo-admin-password.txt"
        user_model = get_user_model()
        if user_model.objects.filter(username=ADMIN_USERNAME).exists() and password_file.is_file():
            return password_file.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(username=ADMIN_USERNAME, defaults={"is_staff": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        return password

    def _step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))
