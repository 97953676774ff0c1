"""Django settings for evalsite, read from environment variables (README lists every one)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from evalsite.cli import LIBRARY_LOGGERS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DEBUG = env_bool("DEBUG", default=False)

_DEVELOPMENT_SECRET_KEY = "development-only-insecure-secret-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or set DEBUG=1 for a development-only default."
        )
    SECRET_KEY = _DEVELOPMENT_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "evalsite",
    "distillation",
    "annotations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "evalsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "evalsite.wsgi.application"
ASGI_APPLICATION = "evalsite.asgi.application"

DEFAULT_SQLITE_PATH = VAR_DIR / "evalsite.sqlite3"
DATABASE_URL = os.environ.get("DATABASE_URL", "") or f"sqlite:///{DEFAULT_SQLITE_PATH}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _sqlite = DATABASES["default"].setdefault("OPTIONS", {})
    # Many writers (annotators, background jobs, several gunicorn workers) share one file. A transaction takes
    # the write lock when it begins (IMMEDIATE), so one that has read never fails to become a writer, which no
    # busy timeout can help with ("database is locked"); writers wait up to `timeout` seconds for each other;
    # WAL lets readers go on while one writes.
    _sqlite.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite.setdefault("timeout", 30)
    _sqlite.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Without collectstatic (development, tests) whitenoise serves straight from the app folders.
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"

# Where checkpoints, analysis reports and other generated artifacts live.
EVALSITE_ARTIFACTS_DIR = Path(os.environ.get("EVALSITE_ARTIFACTS_DIR", VAR_DIR / "artifacts"))
EVALSITE_DATA_DIR = os.environ.get("EVALSITE_DATA_DIR", "")

# Background jobs: on RQ when REDIS_URL is set, in-process otherwise (see evalsite/jobs.py).
REDIS_URL = os.environ.get("REDIS_URL", "")
EVALSITE_QUEUE = os.environ.get("EVALSITE_QUEUE", "evalsite")
RQ_QUEUES = {
    name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": 24 * 3600}
    for name in ("default", EVALSITE_QUEUE)
}

# Annotator writes (answers, screens) per minute per session token; per address it is ten times that.
ANNOTATOR_WRITES_PER_MINUTE = int(os.environ.get("ANNOTATOR_WRITES_PER_MINUTE", "120"))
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "evalsite-default"},
    "ratelimit": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "evalsite-ratelimit"},
}

# Crowd platforms.
MTURK_AWS_ACCESS_KEY_ID = os.environ.get("MTURK_AWS_ACCESS_KEY_ID", "")
MTURK_AWS_SECRET_ACCESS_KEY = os.environ.get("MTURK_AWS_SECRET_ACCESS_KEY", "")
MTURK_SANDBOX = env_bool("MTURK_SANDBOX", default=True)
MTURK_ENDPOINT_URL = os.environ.get("MTURK_ENDPOINT_URL", "")
MTURK_REGION = os.environ.get("MTURK_REGION", "us-east-1")
PROLIFIC_API_TOKEN = os.environ.get("PROLIFIC_API_TOKEN", "")
PROLIFIC_API_URL = os.environ.get("PROLIFIC_API_URL", "https://api.prolific.com/api/v1/")
# Where MTurk may send workers back to (turkSubmitTo); anything else is refused as forged.
MTURK_SUBMIT_ORIGINS = env_list("MTURK_SUBMIT_ORIGINS", "https://www.mturk.com,https://workersandbox.mturk.com")
# The public base URL annotators reach (used in HIT ExternalQuestion and Prolific study URLs).
EVALSITE_PUBLIC_URL = os.environ.get("EVALSITE_PUBLIC_URL", "http://127.0.0.1:8000")

# OpenAI-compatible teacher servers.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")

# Annotator pages are framed by MTurk, so they may not deny framing; the rest of the site does.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# Behind the proxy, the client's address is the one the proxies add to X-Forwarded-For: with N trusted proxies
# in front of the site, the N-th entry from the right (entries further left are whatever the client sent).
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "1"))
if TRUSTED_PROXY_COUNT < 1:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT must be at least 1, not {TRUSTED_PROXY_COUNT}")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG

LOGIN_URL = "admin:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"expected_tied_weights": {"()": "evalsite.cli.ExpectedTiedWeightsWarning"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        **{name: {"level": "WARNING"} for name in LIBRARY_LOGGERS},  # `-v 2` shows their INFO lines
        "accelerate.utils.other": {"filters": ["expected_tied_weights"]},
    },
}
