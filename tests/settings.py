"""Settings for the test suite: the real settings, pointed at the local PostgreSQL by default."""

import os

os.environ.setdefault("SECRET_KEY", "test-suite-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/evalsite")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# Jobs run in-process unless a test points REDIS_URL at the real Redis itself.
os.environ.pop("REDIS_URL", None)

from evalsite.settings import *  # noqa: F403

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# The whole suite posts from 127.0.0.1 within minutes; the rate-limit test lowers this itself.
ANNOTATOR_WRITES_PER_MINUTE = 100_000
