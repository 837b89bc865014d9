"""Every setting lives here, read through strict env readers; local/test/production only override."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from config import database
from config.env import ConfigError, env_bool, env_float, env_int, env_list, env_secret, env_str

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BASE_DIR = Path(__file__).resolve().parents[3]
VAR_DIR = Path(env_str("SOTTO_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
_secret = env_secret("DJANGO_SECRET_KEY")
if _secret is None:
    # The embedded default keeps a generated secret under var/ so sessions survive restarts.
    _secret_file = VAR_DIR / "keys" / "django_secret.key"
    if not _secret_file.exists():
        import secrets

        _secret_file.parent.mkdir(parents=True, exist_ok=True)
        _secret_file.write_text(secrets.token_urlsafe(64))
        _secret_file.chmod(0o600)
    _secret = _secret_file.read_text().strip()
SECRET_KEY = _secret
# Rotation: the previous key(s), whitespace-separated, keep old sessions and signatures valid.
SECRET_KEY_FALLBACKS = (env_secret("DJANGO_SECRET_KEY_FALLBACKS") or "").split()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "apps.core",
    "apps.tenancy",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as static files: /api/docs/ and /api/redoc/ need no CDN
    "apps.api",
    "apps.audit",
    "apps.profiles",
    "apps.catalog",
    "apps.modeling",
    "apps.serving",
    "apps.slo",
    "apps.webadmin",
    "apps.demo",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    # Right after the request id, so it times everything else; /metrics is answered before sessions and CSRF.
    "apps.slo.middleware.SloMiddleware",
    "apps.slo.middleware.MetricsEndpointMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_db = database.resolve(VAR_DIR)
DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "apps.core.pg_backend",  # Django's, with a health check that costs no round trip
        **_db.runtime,
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env_str("SOTTO_TEST_DB", "test_sotto")},
    }
}
DATABASE_OWNER = {"USER": _db.owner_user, "PASSWORD": _db.owner_password}
DATABASE_IS_EMBEDDED = _db.embedded
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SOTTO_SESSION_AGE_S", 8 * 3600, minimum=60)
CSRF_COOKIE_HTTPONLY = True
# Behind TLS (production) set SOTTO_SECURE_COOKIES=true: cookies then never travel over plain HTTP.
SESSION_COOKIE_SECURE = env_bool("SOTTO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_FAILURE_VIEW = "apps.webadmin.views.errors.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in dev and tests
STATICFILES_DIRS = [BASE_DIR / "platform" / "static"] if (BASE_DIR / "platform" / "static").exists() else []
LOGIN_URL = "/login/"  # the web admin's own sign-in (throttled, audited); Django's admin keeps /admin/login/
LOGIN_REDIRECT_URL = "/"
# Every password sign-in (web admin and Django's admin) goes through the throttled backend.
AUTHENTICATION_BACKENDS = ["apps.webadmin.throttle.ThrottledModelBackend"]

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("SOTTO_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.api.permissions.HasTenantScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.api.parsers.JSONParser"],  # 400s for too-deep nesting, lone surrogates
    "EXCEPTION_HANDLER": "apps.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["apps.api.throttling.ApiKeyRateThrottle"],  # per-key token buckets
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sotto API",
    "DESCRIPTION": "Privacy-preserving, multi-tenant real-time recommendations and search.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.api.schema.document_key_errors",
    ],
    # The documentation pages load their JavaScript and CSS from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several "status"/"type"-like fields hold different sets: name each set once, by what it is.
    "ENUM_NAME_OVERRIDES": {
        "EncodingStatusEnum": "apps.catalog.models.EncodingStatus",
        "RunStatusEnum": "apps.modeling.models.RunStatus",
        "VersionStatusEnum": "apps.modeling.models.VersionStatus",
        "ReleaseKindEnum": "apps.modeling.models.ReleaseKind",
        "EventTypeEnum": "apps.profiles.models.EventType",
        "ScopeEnum": "apps.tenancy.models.Scope",
    },
}

# Celery: Redis in production and CI; the embedded default rides on PostgreSQL via kombu SQLAlchemy.
CELERY_BROKER_URL = _db.broker_url
_queue_prefix = env_str("SOTTO_QUEUE_PREFIX", "") or ""
CELERY_TASK_DEFAULT_QUEUE = f"{_queue_prefix}default"
CELERY_TASK_ROUTES = {
    "sotto.catalog.*": {"queue": f"{_queue_prefix}encode"},
    "sotto.modeling.*": {"queue": f"{_queue_prefix}train"},
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("SOTTO_TASK_SOFT_TIME_LIMIT_S", 1800, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("SOTTO_TASK_TIME_LIMIT_S", 1900, minimum=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL.startswith("redis"):
    # Unacked tasks are redelivered after this long (a killed worker's batch is redone).
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env_int(
        "SOTTO_VISIBILITY_TIMEOUT_S", 3600, minimum=60
    )

CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Our own knobs, read as one typed object through apps.core.conf.sotto(): a new key needs its field there.
SOTTO: dict[str, Any] = {
    "QUEUE_PREFIX": _queue_prefix,
    "API_KEY_CACHE_TTL_S": env_float("SOTTO_API_KEY_CACHE_TTL_S", 5.0),
    "API_KEY_LAST_USED_EVERY_S": env_float("SOTTO_API_KEY_LAST_USED_EVERY_S", 60.0),
    "MASTER_KEY": env_secret("SOTTO_MASTER_KEY"),
    # Retired master keys (comma-separated), kept only while `rewrap_tenant_keys` moves rows off them.
    "PREVIOUS_MASTER_KEYS": env_list("SOTTO_PREVIOUS_MASTER_KEYS", []),
    "KEY_DIR": VAR_DIR / "keys",
    "KEY_CACHE_TTL_S": env_float("SOTTO_KEY_CACHE_TTL_S", 300.0),  # unwrapped tenant keys kept in memory
    "EVENT_RETENTION_DAYS": env_int(
        "SOTTO_EVENT_RETENTION_DAYS", 365, minimum=1
    ),  # Tenant.settings overrides
    "AUDIT_SIGNING_KEY": env_secret("SOTTO_AUDIT_SIGNING_KEY"),
    # After rotating the signing key: the old public key(s), PEM, so older checkpoints still verify.
    "AUDIT_PREVIOUS_PUBLIC_KEYS": env_secret("SOTTO_AUDIT_PREVIOUS_PUBLIC_KEYS"),
    "AUDIT_CHECKPOINT_DIR": Path(
        env_str("SOTTO_AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "audit-checkpoints")) or ""
    ),
    # Where signed checkpoints are copied outside the database (a class with write/read; see apps/audit/sinks.py).
    "AUDIT_CHECKPOINT_SINK": env_str("SOTTO_AUDIT_CHECKPOINT_SINK", "apps.audit.sinks.DirectorySink"),
    "ENCODER_MODEL_PATH": env_str("SOTTO_ENCODER_MODEL_PATH"),
    "ENCODER_PRECISION": env_str("SOTTO_ENCODER_PRECISION", "fp32"),
    "CATALOG_ENCODE_BATCH": env_int("SOTTO_CATALOG_ENCODE_BATCH", 64, minimum=1),
    "CATALOG_HNSW_EF_SEARCH": env_int("SOTTO_CATALOG_HNSW_EF_SEARCH", 100, minimum=1),
    # Serving (apps/serving): weight of the user's interest in personalised search (0 = query only),
    # the query encoder's intra-op threads in each web process, and its LRU of query vectors.
    "SERVING_SEARCH_USER_WEIGHT": env_float("SOTTO_SERVING_SEARCH_USER_WEIGHT", 0.3),
    "SERVING_ENCODER_THREADS": env_int("SOTTO_SERVING_ENCODER_THREADS", 1, minimum=1),
    "SERVING_QUERY_CACHE_SIZE": env_int("SOTTO_SERVING_QUERY_CACHE_SIZE", 4096, minimum=0),
    # hnsw.ef_search of the serving k-NN over content vectors: 200 reaches recall@10 >= 0.95 on the
    # 100k-item benchmark where 100 gives about 0.93 (docs/results/serving.md).
    "SERVING_HNSW_EF_SEARCH": env_int("SOTTO_SERVING_HNSW_EF_SEARCH", 200, minimum=1),
    "DEFAULT_EPSILON_TOTAL": env_float("SOTTO_DEFAULT_EPSILON_TOTAL", 16.0),
    "DEFAULT_DELTA": env_float("SOTTO_DEFAULT_DELTA", 1e-6),
    # Operator caps on what a tenant admin may set (docs/privacy-model.md, "Budget policy"): the ε of a
    # budget (lifetime, or per renewal window) and the shortest renewal window.
    "MAX_EPSILON_TOTAL": env_float("SOTTO_MAX_EPSILON_TOTAL", 64.0),
    "MIN_RENEWAL_DAYS": env_int("SOTTO_MIN_RENEWAL_DAYS", 7, minimum=1),
    # Modeling (apps/modeling, docs/modeling.md): serving reads the active-model pointer at most once
    # per MODELING_POINTER_TTL_S per tenant and process; the trainer beats every MODELING_HEARTBEAT_S and
    # the reaper fails a run silent for MODELING_STALE_AFTER_S ("worker lost").
    "MODELING_POINTER_TTL_S": env_float("SOTTO_MODELING_POINTER_TTL_S", 1.0),
    # 400: the served vectors' index reached recall@10 0.81 at 100 and 0.96 at 400 on the 100k-item serving
    # bench (docs/results/serving.md); a personal answer that misses a fifth of its top 10 is a worse model.
    "MODELING_HNSW_EF_SEARCH": env_int("SOTTO_MODELING_HNSW_EF_SEARCH", 400, minimum=1),
    "MODELING_HEARTBEAT_S": env_float("SOTTO_MODELING_HEARTBEAT_S", 10.0),
    "MODELING_STALE_AFTER_S": env_float("SOTTO_MODELING_STALE_AFTER_S", 120.0),
    "MODELING_REQUEUE_AFTER_S": env_float("SOTTO_MODELING_REQUEUE_AFTER_S", 1800.0),
    "MODELING_MIN_USERS": env_int("SOTTO_MODELING_MIN_USERS", 10, minimum=1),
    "MODELING_POPULARITY_CAP": env_int("SOTTO_MODELING_POPULARITY_CAP", 50, minimum=1),
    "MODELING_TORCH_THREADS": env_int("SOTTO_MODELING_TORCH_THREADS", 1, minimum=0),  # 0 = torch's default
    # DP-SGD of one tenant ("tower") on this many torch.distributed (gloo) processes; each gets
    # MODELING_TORCH_THREADS threads (ml.distributed; fewer when the tenant is too small for N)
    "MODELING_TRAIN_PROCESSES": env_int("SOTTO_MODELING_TRAIN_PROCESSES", 1, minimum=1),
    # holdout users scored per run (a seeded sample when there are more) and the activation gate's
    # relative margin over DP popularity and the active version (training.gate_decision)
    "MODELING_EVAL_USERS": env_int("SOTTO_MODELING_EVAL_USERS", 5000, minimum=1),
    "MODELING_GATE_MARGIN": env_float("SOTTO_MODELING_GATE_MARGIN", 0.0),
    # how often beat looks for tenants whose retraining schedule is due (apps/modeling/lifecycle.py)
    "MODELING_RETRAIN_CHECK_S": env_float("SOTTO_MODELING_RETRAIN_CHECK_S", 600.0),
    "METRICS_TOKEN": env_secret("SOTTO_METRICS_TOKEN"),
    # Rate limits per API key (apps/api/throttling.py): ApiKey.rate_limit_per_s, else
    # Tenant.settings["rate_limit_per_s"], else this; 0 = no limit. Buckets are per process unless
    # SOTTO_RATE_LIMIT_REDIS_URL names a Redis shared by every web process.
    "RATE_LIMIT_PER_S": env_float("SOTTO_RATE_LIMIT_PER_S", 200.0),
    "RATE_LIMIT_BURST_S": env_float("SOTTO_RATE_LIMIT_BURST_S", 2.0),
    "RATE_LIMIT_TENANT_TTL_S": env_float("SOTTO_RATE_LIMIT_TENANT_TTL_S", 30.0),
    "RATE_LIMIT_REDIS_URL": env_str("SOTTO_RATE_LIMIT_REDIS_URL"),
    # SLO measurement (apps/slo): each process flushes its histogram buffer every SLO_FLUSH_EVERY_S.
    "SLO_FLUSH_EVERY_S": env_float("SOTTO_SLO_FLUSH_EVERY_S", 10.0),
    "SLO_MAX_BUFFER_AGE_S": env_float("SOTTO_SLO_MAX_BUFFER_AGE_S", 3600.0),
    "SLO_MINUTE_RETENTION_H": env_float("SOTTO_SLO_MINUTE_RETENTION_H", 8.0),
    "SLO_RETENTION_DAYS": env_float("SOTTO_SLO_RETENTION_DAYS", 35.0),
    "SLO_ALERT_MIN_EVENTS": env_int("SOTTO_SLO_ALERT_MIN_EVENTS", 20, minimum=1),
    # An objective is judged (budget, burn rates, alerts) only from this many requests (not
    # throttled) in its window; below it the status says "not enough traffic yet (N of M requests)".
    "SLO_MIN_SAMPLE": env_int("SOTTO_SLO_MIN_SAMPLE", 100, minimum=1),
    # POST /api/v1/events and /items with more records than this count as "ingest_batch".
    "SLO_INGEST_SMALL_MAX": env_int("SOTTO_SLO_INGEST_SMALL_MAX", 100, minimum=1),
    "ACCESS_LOG": env_bool("SOTTO_ACCESS_LOG", True),
    # Objectives a tenant starts with (its admins can change them): share of requests within the
    # threshold, and share of requests without a 5xx, over 28 days.
    "SLO_DEFAULTS": {
        "recommend": {"latency_threshold_ms": 50.0, "latency_target": 0.99, "availability_target": 0.999},
        "search": {"latency_threshold_ms": 100.0, "latency_target": 0.99, "availability_target": 0.999},
        "ingest": {"latency_threshold_ms": 200.0, "latency_target": 0.99, "availability_target": 0.999},
        "ingest_batch": {
            "latency_threshold_ms": 1000.0,
            "latency_target": 0.99,
            "availability_target": 0.999,
        },
        "other": {"latency_threshold_ms": 250.0, "latency_target": 0.99, "availability_target": 0.999},
    },
    # Web admin sign-in throttling: this many failures per (username, client IP) within the window locks
    # that pair until the oldest failure leaves the window.
    "LOGIN_MAX_FAILURES": env_int("SOTTO_LOGIN_MAX_FAILURES", 5, minimum=1),
    "LOGIN_WINDOW_S": env_int("SOTTO_LOGIN_WINDOW_S", 900, minimum=1),
    "RUNTIME_ROLE": _db.runtime["USER"],
}
if SOTTO["ENCODER_PRECISION"] not in {"fp32", "int8"}:
    raise ConfigError("SOTTO_ENCODER_PRECISION must be fp32 or int8")

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "filters": {
        "request": {"()": "apps.core.logging.RequestContextFilter"},
        # End-user ids in paths (/api/v1/users/<id>) never reach a log line, whoever logs them.
        "redact_user_ids": {"()": "apps.profiles.redaction.RedactUserIdsFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request", "redact_user_ids"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("SOTTO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
