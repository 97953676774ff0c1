"""Configuration from the environment: deploy checks, refusal without a secret, the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_LIKE = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-like-secret-key-with-more-than-fifty-characters-0123456789",
    "ALLOWED_HOSTS": "evalsite.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://evalsite.example.org",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/evalsite",
}


def manage(*args: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT"}
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout
    )


def test_check_deploy_is_clean_with_production_like_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_LIKE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_refuses_to_start_without_a_secret_key_unless_debugging():
    env = {**PRODUCTION_LIKE, "SECRET_KEY": ""}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr

    debugging = manage("check", env={**env, "DEBUG": "1"})
    assert debugging.returncode == 0, debugging.stderr


def test_migrations_match_the_models():
    result = manage("makemigrations", "--check", "--dry-run", env=PRODUCTION_LIKE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_default_is_a_sqlite_file_under_var(tmp_path):
    """With no DATABASE_URL the site runs on SQLite; we point VAR-like defaults at a temp copy of the repo."""
    env = {"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}"}
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])",
        env={"DEBUG": "1", "DATABASE_URL": ""},
    )
    assert shown.stdout.strip().splitlines()[-1] == "django.db.backends.sqlite3"
    default_path = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['NAME'])",
        env={"DEBUG": "1", "DATABASE_URL": ""},
    )
    assert default_path.stdout.strip().splitlines()[-1] == str(ROOT / "var" / "evalsite.sqlite3")


def test_embedded_default_imports_data_on_sqlite(tmp_path):
    """The demo's first steps on the embedded default: migrate and import a small CommonsenseQA folder."""
    folder = tmp_path / "cqa"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        '{"id": "q1", "question": "Where do fish live?", "choices": ["tree", "water", "sky", "road", "desk"],'
        ' "answer": "water"}\n',
        encoding="utf-8",
    )
    env = {"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}
    assert manage("migrate", "--noinput", env=env, timeout=300).returncode == 0
    first = manage("import_cqa", "--path", str(folder), "--quiet", env=env)
    assert "train: 1 questions stored" in first.stdout, first.stderr
    second = manage("import_cqa", "--path", str(folder), "--quiet", env=env)
    assert "train: 0 questions stored, 1 already there" in second.stdout


@pytest.mark.parametrize("module", ["evalsite.urls", "distillation.admin", "annotations.admin", "evalsite.jobs"])
def test_the_web_process_does_not_load_torch(module):
    code = (
        "import django, importlib, sys; django.setup(); "
        f"importlib.import_module('{module}'); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "evalsite.settings", "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False False", result.stderr
