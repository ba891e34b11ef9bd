"""Settings shared by every environment.

Every deployment value is read here, once, from the environment or a `.env` file at the
repository root (django-environ). Environment modules only override defaults.
"""

import json
from datetime import timedelta
from pathlib import Path

import environ
from botocore.config import Config as BotocoreConfig

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "django_guid",
    "django_prometheus",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "imagekit",
    "core",
    "cars",
    "imports",
    "gallery",
    "ops",
    "axes",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "core.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.cors.CorsMiddleware",  # corsheaders', cheaper without an Origin
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.request_metrics.PrometheusAfterMiddleware",  # django-prometheus', cheaper
    # A cached API page is answered here: the middlewares above run around it (their
    # headers always from the current settings), those below are not needed for it.
    "cars.api.caching.CatalogCacheMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Turns a login refused by django-axes into its lockout answer (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

# --- Logins (the admin) -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes counts failed logins (in the database, so every process shares the count)
# and refuses any login from a client address with CARS_LOGIN_FAILURE_LIMIT failures for
# CARS_LOGIN_COOLOFF seconds, the right password included (429). The address is the one
# the rate limits use (core.clientip, CARS_NUM_PROXIES).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("CARS_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("CARS_LOGIN_COOLOFF", default=900))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "core.clientip.client_ip"
AXES_RESET_ON_SUCCESS = True

# --- Database ---------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the API read while an import writes; IMMEDIATE avoids lock upgrades failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
# Keep connections across requests (a new SQLite connection per request re-runs the PRAGMAs).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery -------------------------------------------------------------------
# REDIS_URL set: Redis is the cache (also imagekit's) and the Celery broker, and imports
# and renditions run as Celery tasks. Unset: local-memory cache, tasks run inline.
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "image-backend",
            "OPTIONS": {
                # Redis down must not break reads: misses fall through to the database.
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "image-backend",
        }
    }

# Redis or RabbitMQ (amqp://). Unset (and no REDIS_URL): work runs in the calling process.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL) or "memory://"
CELERY_RESULT_BACKEND = None  # job state lives in ImportJob rows, not in Celery results
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# No task runs long: an import is a row-phase task and chunks of CARS_IMAGE_CHUNK pictures.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
# Redis hands an unacked message out again after this; it must exceed the longest task
# (celery#7918). A dead worker's work comes back sooner, through the heartbeat sweep.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 60)
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media -------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
MEDIA_URL = env("MEDIA_URL", default="/media/")
# Serve MEDIA_URL from Django itself (development only; production uses S3 or a proxy).
SERVE_MEDIA = False

# S3 (django-storages): originals and renditions in a bucket, public unsigned URLs;
# AWS_S3_CUSTOM_DOMAIN puts CloudFront (or any CDN) in front of every URL.
USE_S3 = env.bool("USE_S3", default=False)
# The botocore client of every S3Storage (django-storages reads AWS_S3_CLIENT_CONFIG):
# bounded timeouts and few retries, so an unreachable S3 fails in seconds (/readyz → 503)
# instead of botocore's defaults (60 s connect + 60 s read, 5 attempts). With it set,
# addressing style / signature version / proxies would be set here, not in AWS_S3_* names.
AWS_S3_CLIENT_CONFIG = BotocoreConfig(
    connect_timeout=env.float("AWS_S3_CONNECT_TIMEOUT", default=3.0),
    read_timeout=env.float("AWS_S3_READ_TIMEOUT", default=10.0),
    # Attempts in all, the first included (botocore's "max_attempts" would count retries).
    retries={"mode": "standard", "total_max_attempts": env.int("AWS_S3_MAX_ATTEMPTS", default=3)},
)
STORAGES = {
    # Overwrite in place: stored names carry a content hash, so a same-named file is the
    # same picture, and rendering needs no exists()/delete() round trips.
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"allow_overwrite": True},
    },
    # whitenoise serves hashed, compressed static files straight from the app process.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if USE_S3:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "access_key": env("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env("AWS_SECRET_ACCESS_KEY", default=None),
            "custom_domain": env("AWS_S3_CUSTOM_DOMAIN", default=None),
            "querystring_auth": False,
            "file_overwrite": True,
            "default_acl": None,
            "object_parameters": {"CacheControl": "public, max-age=31536000, immutable"},
        },
    }

# Uploaded CSVs (the admin's "Import CSV" page) are private: never under MEDIA_ROOT nor in
# the public bucket, stored as `text/csv` attachments whatever the uploader said, and
# deleted when their job ends (imports.uploads). Locally a folder nothing serves; with S3
# a bucket of their own (AWS_IMPORTS_BUCKET_NAME), which must not be public nor behind
# the CDN, with short-lived signed URLs if one is ever asked for.
CARS_UPLOAD_ROOT = env.path("CARS_UPLOAD_ROOT", default=BASE_DIR / "uploads")
STORAGES["imports"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {
        "location": CARS_UPLOAD_ROOT,
        "file_permissions_mode": 0o600,
        "directory_permissions_mode": 0o700,
    },
}
AWS_IMPORTS_BUCKET_NAME = env("AWS_IMPORTS_BUCKET_NAME", default="")
if USE_S3:
    STORAGES["imports"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **STORAGES["default"]["OPTIONS"],
            # Development may share the media bucket (keys under imports/); production
            # refuses to start without a bucket of their own (config.settings.production).
            "bucket_name": AWS_IMPORTS_BUCKET_NAME or STORAGES["default"]["OPTIONS"]["bucket_name"],
            "custom_domain": None,
            "querystring_auth": True,
            "querystring_expire": 300,
            "file_overwrite": False,
            "default_acl": None,  # the bucket is private; per-object ACLs are off on AWS
            "object_parameters": {
                "ContentType": "text/csv",
                "ContentDisposition": "attachment",
                "CacheControl": "private, no-store",
            },
        },
    }

# --- CORS (django-cors-headers): only the API is shared with other origins -----------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_EXPOSE_HEADERS = ["ETag", "Link", "X-Total-Count", "X-Request-ID", "X-Search-Corrected"]

# --- Clients behind proxies -------------------------------------------------------------
# How many proxies in front of the app append the address they saw to X-Forwarded-For
# (nginx's $proxy_add_x_forwarded_for, an Ingress controller): the client is that many
# entries from the right; whatever the client itself sent stays to the left, unused.
# 0: no proxy, the client is the peer address. The anonymous throttles (core.throttling)
# and the login lockout (django-axes) all read it through core.clientip.
CARS_NUM_PROXIES = env.int("CARS_NUM_PROXIES", default=0)

# --- Django REST framework --------------------------------------------------------------
CARS_ANON_RATE = env("CARS_ANON_RATE", default="")
REST_FRAMEWORK = {
    "NUM_PROXIES": CARS_NUM_PROXIES,  # for any DRF throttle; ours use core.clientip
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": (["core.throttling.AnonThrottle"] if CARS_ANON_RATE else []),
    "DEFAULT_THROTTLE_RATES": {"anon": CARS_ANON_RATE or None},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "image_backend API",
    "DESCRIPTION": "Cars imported from CSV, with images rendered per client platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the sidecar package: the docs page works with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "cars.api.schema.concrete_platform_paths",
    ],
}

# --- Metrics ----------------------------------------------------------------------------
# Set: /metrics answers only on connections to this port (gunicorn binds it beside the
# public one: deploy/docker/gunicorn.conf.py), which no Ingress or proxy routes to.
# 0: on any port (development; a process not behind gunicorn cannot tell ports apart).
CARS_METRICS_PORT = env.int("CARS_METRICS_PORT", default=0)

# --- django-imagekit --------------------------------------------------------------------
# Renditions are made by the import pipeline, never on access (see cars.pictures.rendering).
IMAGEKIT_DEFAULT_CACHEFILE_STRATEGY = "cars.pictures.rendering.GeneratedByImport"
# Renditions of `images/<sha256>.jpg` are named `CACHE/images/<sha256>/<spec hash>.jpg`.
IMAGEKIT_CACHEFILE_DIR = "CACHE"

# --- The catalogue ----------------------------------------------------------------------
CARS_CSV_SOURCE = env("CARS_CSV_SOURCE", default=str(BASE_DIR / "sample" / "cars.csv"))
CARS_SYNC_INTERVAL = env.int("CARS_SYNC_INTERVAL", default=0)
CARS_ALLOW_PRIVATE_URLS = env.bool("CARS_ALLOW_PRIVATE_URLS", default=False)
CARS_PAGE_SIZE = env.int("CARS_PAGE_SIZE", default=100)
CARS_MAX_PAGE_SIZE = env.int("CARS_MAX_PAGE_SIZE", default=1000)
CARS_IMPORT_WORKERS = env.int("CARS_IMPORT_WORKERS", default=16)
CARS_FETCH_TIMEOUT = env.float("CARS_FETCH_TIMEOUT", default=30.0)
# Seconds for one whole fetch of an image or of the CSV: every redirect, retry and pause
# between retries. None (unset): 2 × CARS_FETCH_TIMEOUT, whichever settings module set it.
CARS_FETCH_DEADLINE = env.float("CARS_FETCH_DEADLINE", default=None)
CARS_FETCH_RETRIES = env.int("CARS_FETCH_RETRIES", default=2)
CARS_FETCH_BACKOFF = env.float("CARS_FETCH_BACKOFF", default=0.5)
CARS_IMAGE_MAX_BYTES = env.int("CARS_IMAGE_MAX_BYTES", default=20_000_000)
CARS_IMAGE_MAX_PIXELS = env.int("CARS_IMAGE_MAX_PIXELS", default=50_000_000)
CARS_CSV_MAX_BYTES = env.int("CARS_CSV_MAX_BYTES", default=200_000_000)
# What a car keeps of a feed (SPEC §3): pictures, and its other columns as attributes.
CARS_MAX_PICTURES_PER_CAR = env.int("CARS_MAX_PICTURES_PER_CAR", default=20)
CARS_MAX_ATTRIBUTES = env.int("CARS_MAX_ATTRIBUTES", default=50)
CARS_API_MAX_AGE = env.int("CARS_API_MAX_AGE", default=0)
# Distinct pictures per image task of a queued import.
CARS_IMAGE_CHUNK = env.int("CARS_IMAGE_CHUNK", default=16)
# Seconds without a heartbeat after which an import's lock or task counts as dead.
CARS_IMPORT_HEARTBEAT_TIMEOUT = env.int("CARS_IMPORT_HEARTBEAT_TIMEOUT", default=60)
# Rejected rows, and image failures, a job stores (each; beyond, they are counted only:
# `import_csv --report` lists every one), and how many of each the job shows inline (the
# imports API's job, the admin's page); the others are paged at /api/imports/<id>/errors/.
CARS_JOB_MAX_PROBLEMS = env.int("CARS_JOB_MAX_PROBLEMS", default=10_000)
CARS_JOB_REPORT_PREVIEW = env.int("CARS_JOB_REPORT_PREVIEW", default=100)

# --- Search engine ----------------------------------------------------------------------
# Unset: `?search=` runs in the database (cars.fulltext). Set to an OpenSearch URL
# (credentials in it for a managed cluster: https://user:password@host): the catalogue is
# indexed there and the engine answers, the database answering while it is down.
SEARCH_URL = env("SEARCH_URL", default="")
# The alias that search reads and writes: several sites may share one cluster. Each
# `search_index --rebuild` builds `<SEARCH_INDEX>-<timestamp>` and moves the alias to it.
SEARCH_INDEX = env("SEARCH_INDEX", default="cars")
SEARCH_SHARDS = env.int("SEARCH_SHARDS", default=1)
SEARCH_REPLICAS = env.int("SEARCH_REPLICAS", default=1)
# How often the engine makes new writes searchable (its refresh_interval), and how a
# write waits for that: wait_for (the default: an import's results show when it ends),
# true (refresh at once: tests), false (never wait).
SEARCH_REFRESH_INTERVAL = env("SEARCH_REFRESH_INTERVAL", default="1s")
SEARCH_REFRESH = env("SEARCH_REFRESH", default="wait_for")
# Seconds per request to the engine; past it the database answers the search.
SEARCH_TIMEOUT = env.float("SEARCH_TIMEOUT", default=5.0)

DEFAULT_PLATFORMS = {
    "default": {
        "processors": [["fit", 1920, 1920]],
        "format": "JPEG",
        "quality": 90,
        "progressive": True,
    },
    "web": {
        "processors": [["fit", 1280, 960]],
        "format": "JPEG",
        "quality": 85,
        "progressive": True,
    },
    "mobile": {
        "processors": [["fit", 640, 480]],
        "format": "JPEG",
        "quality": 80,
        "progressive": False,
    },
}
_platforms_json = env("CARS_PLATFORMS", default="")
CARS_PLATFORMS = json.loads(_platforms_json) if _platforms_json else DEFAULT_PLATFORMS

# --- Logging ----------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (staging/production default), with the
# request id (X-Request-ID, django-guid) on every line logged while serving a request.
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="human")
# core.middleware.RequestLogMiddleware sets django-guid's request id and echoes it in the
# X-Request-ID response header (django-cors-headers owns Access-Control-Expose-Headers);
# django-guid's log filter puts it on every line.


def logging_config(log_format: str, level: str) -> dict:
    """Django LOGGING for `human` or `json` output (environment modules pick the default)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "django_guid.log_filters.CorrelationId"}},
        "formatters": {
            "human": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
                "rename_fields": {
                    "asctime": "time",
                    "levelname": "level",
                    "name": "logger",
                    "correlation_id": "request_id",
                },
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "human",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"handlers": ["console"], "level": level, "propagate": False},
            # The request log middleware writes one line per request; these would repeat it.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "ERROR" if log_format == "json" else "INFO"},
            "httpx": {"level": "WARNING"},  # a line per image is noise; failures are reported
            # A line per request to the search engine (and a curl command per request).
            "opensearch": {"level": "WARNING"},
            "opensearchpy.trace": {"level": "WARNING", "propagate": False},
            "django_guid": {"level": "WARNING"},
            "axes": {"level": "WARNING"},  # a line per login; lockouts are warnings
        },
    }


LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
