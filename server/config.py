"""Configuration read from the environment, with embedded defaults for a local run.

Every reader validates its value and raises :class:`ConfigError` naming the variable and saying what to
fix, so a typo stops start-up instead of surfacing later as a confusing failure.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_PORT = 6390


class ConfigError(Exception):
    """A configuration value is missing or malformed. The message names the variable."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def setting_int(name: str, default: int, minimum: int) -> int:
    """An integer Django setting when one is set (tests override settings), else the environment variable."""
    value = getattr(settings, name, None)
    return int(value) if value is not None else env_int(name, default, minimum=minimum)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def var_dir() -> Path:
    """Local state (SQLite file, media, secrets, logs): ``$LVIT_VAR_DIR`` or ``var/`` in the repo."""
    path = Path(env_str("LVIT_VAR_DIR", str(BASE_DIR / "var"))).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_database_url(url: str) -> dict:
    """Turn ``postgres://user:pass@host:port/name`` or ``sqlite:///path`` into a Django DATABASES entry."""
    name = "DATABASE_URL"
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in {"postgres", "postgresql", "pgsql", "postgresql+psycopg2"}:
        db_name = unquote(parsed.path.lstrip("/"))
        if not parsed.hostname and not parse_qs(parsed.query).get("host"):
            raise ConfigError(f"{name}={url!r} has no host; expected postgres://USER:PASSWORD@HOST:PORT/DBNAME")
        if not db_name:
            raise ConfigError(
                f"{name}={url!r} has no database name; expected postgres://USER:PASSWORD@HOST:PORT/DBNAME"
            )
        try:
            port = parsed.port
        except ValueError:
            raise ConfigError(f"{name}={url!r} has a malformed port; expected a number such as 5432") from None
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items() if k != "host"}
        host = parsed.hostname or parse_qs(parsed.query)["host"][-1]
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": host,
            "PORT": str(port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if scheme == "sqlite":
        path = unquote(parsed.path)
        if parsed.netloc:
            raise ConfigError(
                f"{name}={url!r}: use sqlite:///relative/path or sqlite:////absolute/path (three or four slashes)"
            )
        if not path or path == "/":
            raise ConfigError(f"{name}={url!r} names no file; expected sqlite:///var/db.sqlite3")
        file_path = Path(path[1:])  # sqlite:///rel/path is relative, sqlite:////abs/path absolute
        if not file_path.is_absolute():
            file_path = BASE_DIR / file_path
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(file_path), "OPTIONS": {"timeout": 30}}
    raise ConfigError(
        f"{name}={url!r} has an unsupported scheme {scheme!r}; use postgres://USER:PASSWORD@HOST:PORT/DBNAME "
        "or sqlite:///path/to/file.sqlite3"
    )


def parse_redis_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(
            f"REDIS_URL={url!r} must start with redis://, rediss:// or unix://, e.g. redis://127.0.0.1:6379/0"
        )
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ConfigError(f"REDIS_URL={url!r} has no host, e.g. redis://127.0.0.1:6379/0")
    try:
        _ = parsed.port
    except ValueError:
        raise ConfigError(f"REDIS_URL={url!r} has a malformed port") from None
    path = parsed.path.lstrip("/")
    if parsed.scheme != "unix" and path and not path.isdigit():
        raise ConfigError(f"REDIS_URL={url!r}: the database after the last / must be a number, e.g. /0")
    return url


def default_redis_url() -> str:
    """Where the embedded Redis that ``make run`` starts listens when ``REDIS_URL`` is unset."""
    port = env_int("LVIT_REDIS_PORT", DEFAULT_REDIS_PORT, minimum=1)
    return f"redis://127.0.0.1:{port}/0"


def ml_device(raw: str) -> str:
    """``auto`` picks ``cuda`` when a GPU is visible, else ``cpu``; ``cuda:N`` and ``cpu`` are taken as given.

    "Visible" is read without importing torch (settings load in every web process, and torch costs seconds there):
    torch is installed, the NVIDIA driver lists a GPU, and ``CUDA_VISIBLE_DEVICES`` does not hide them all.
    """
    value = raw.strip().lower()
    if value == "auto":
        return "cuda" if _gpu_visible() else "cpu"
    if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise ConfigError(f"ML_DEVICE={raw!r} is not a device; use auto, cpu, cuda or cuda:N")


def _gpu_visible() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def secret_key(var: Path) -> str:
    """``SECRET_KEY`` from the environment, else one generated once and kept in a private file."""
    value = os.environ.get("SECRET_KEY")
    if value:
        if len(value) < 32:
            raise ConfigError("SECRET_KEY is shorter than 32 characters; use a long random value")
        return value
    path = var / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(50)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    os.replace(tmp, path)
    return key


@dataclass(frozen=True)
class StorageConfig:
    backend: str  # "local" or "s3"
    media_root: Path
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_addressing_style: str = "auto"


def storage_config(var: Path) -> StorageConfig:
    backend = env_str("LVIT_STORAGE", "local").lower()
    if backend not in {"local", "s3"}:
        raise ConfigError(f"LVIT_STORAGE={backend!r} must be 'local' or 's3'")
    media_root = Path(env_str("LVIT_MEDIA_ROOT", str(var / "media"))).resolve()
    if backend == "s3":
        bucket = env_str("LVIT_S3_BUCKET", "")
        if not bucket:
            raise ConfigError("LVIT_STORAGE=s3 needs LVIT_S3_BUCKET (the bucket name)")
        endpoint_url = env_str("LVIT_S3_ENDPOINT_URL", "")
        # MinIO and most self-hosted S3 services answer only path-style requests (http://host:9000/bucket/key);
        # virtual-hosted style would need a DNS name per bucket (bucket.minio), which a compose network lacks.
        addressing_style = env_str("LVIT_S3_ADDRESSING_STYLE", "path" if endpoint_url else "auto").lower()
        if addressing_style not in {"auto", "path", "virtual"}:
            raise ConfigError(f"LVIT_S3_ADDRESSING_STYLE={addressing_style!r} must be 'auto', 'path' or 'virtual'")
        return StorageConfig(
            backend="s3",
            media_root=media_root,
            s3_bucket=bucket,
            s3_endpoint_url=endpoint_url,
            s3_region=env_str("LVIT_S3_REGION", ""),
            s3_addressing_style=addressing_style,
        )
    return StorageConfig(backend="local", media_root=media_root)


@dataclass(frozen=True)
class PacsConfig:
    """A DICOMweb PACS to import from and write segmentations back to; ``url`` empty means none is connected."""

    url: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    timeout: float = 30.0
    ca_bundle: str = ""
    max_import_instances: int = 200
    name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.url)


def pacs_config() -> PacsConfig:
    """``PACS_URL`` (the DICOMweb root, e.g. ``https://pacs.example.org/dicom-web``) and its credentials:
    ``PACS_USERNAME`` + ``PACS_PASSWORD`` (HTTP basic) or ``PACS_TOKEN`` (a bearer token), not both."""
    url = env_str("PACS_URL", "").strip().rstrip("/")
    username, password, token = env_str("PACS_USERNAME", ""), env_str("PACS_PASSWORD", ""), env_str("PACS_TOKEN", "")
    timeout = env_int("PACS_TIMEOUT", 30, minimum=1)
    max_instances = env_int("PACS_MAX_IMPORT_INSTANCES", 200, minimum=1)
    ca_bundle = env_str("PACS_CA_BUNDLE", "")
    if not url:
        if username or password or token:
            raise ConfigError("PACS_USERNAME/PACS_PASSWORD/PACS_TOKEN are set but PACS_URL is not; set PACS_URL too")
        return PacsConfig(timeout=float(timeout), max_import_instances=max_instances)
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ConfigError(f"PACS_URL={url!r} must be an http(s) URL of the DICOMweb root, e.g. https://pacs/dicom-web")
    try:
        _ = parsed.port
    except ValueError:
        raise ConfigError(f"PACS_URL={url!r} has a malformed port") from None
    if parsed.username or parsed.password:
        raise ConfigError("PACS_URL must not hold credentials; put them in PACS_USERNAME and PACS_PASSWORD")
    if parsed.query or parsed.fragment:
        raise ConfigError(f"PACS_URL={url!r} must not have a query or fragment; give the DICOMweb root only")
    if bool(username) != bool(password):
        raise ConfigError("set both PACS_USERNAME and PACS_PASSWORD (HTTP basic authentication), or neither")
    if token and username:
        raise ConfigError("set either PACS_TOKEN (bearer) or PACS_USERNAME/PACS_PASSWORD (basic), not both")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise ConfigError(f"PACS_CA_BUNDLE={ca_bundle!r} is not a file; give the path of a PEM bundle")
    return PacsConfig(
        url=url,
        username=username,
        password=password,
        token=token,
        timeout=float(timeout),
        ca_bundle=ca_bundle,
        max_import_instances=max_instances,
        name=env_str("PACS_NAME", parsed.hostname or url),
    )
