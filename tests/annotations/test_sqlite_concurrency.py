"""The embedded SQLite default under concurrent writers: no "database is locked", nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_eight_annotators_at_once_on_sqlite_get_no_error_and_lose_nothing(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
        "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "0",
        "EVALSITE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "LOG_LEVEL": "ERROR",
    }
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "tests.annotations.sqlite_writers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["transaction_mode"] == "IMMEDIATE" and outcome["journal_mode"] == "wal"
    assert outcome["errors"] == [], "\n".join(outcome["errors"])
    # 8 annotators x 8 screens x 3 constructs, every autosave acknowledged and stored with its value.
    assert outcome["acknowledged"] == outcome["stored"] == 8 * 8 * 3
    assert outcome["lost_or_changed"] == 0
