"""Configuration: embedded defaults, and bad values that stop start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import (
    ConfigError,
    env_bool,
    env_int,
    ml_device,
    pacs_config,
    parse_database_url,
    parse_redis_url,
    secret_key,
)

REPO = Path(__file__).resolve().parents[2]


def test_postgres_url_parses_every_part() -> None:
    db = parse_database_url("postgres://alice:s%40cret@db.example:6543/lvit?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "alice",
        "s@cret",
        "db.example",
        "6543",
        "lvit",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_sqlite_url_relative_and_absolute(tmp_path: Path) -> None:
    assert parse_database_url("sqlite:///var/x.sqlite3")["NAME"].endswith(os.path.join("var", "x.sqlite3"))
    assert parse_database_url(f"sqlite:///{tmp_path}/db.sqlite3")["NAME"] == str(tmp_path / "db.sqlite3")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://root@localhost/x", "unsupported scheme"),
        ("postgres://u@h:notaport/db", "malformed port"),
        ("postgres://u@h:5432/", "no database name"),
        ("postgres:///db", "no host"),
        ("sqlite://host/file", "three or four slashes"),
        ("not a url", "unsupported scheme"),
    ],
)
def test_bad_database_urls_name_the_variable(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_database_url(url)
    assert "DATABASE_URL" in str(err.value)
    assert fragment in str(err.value)


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://:x", "redis://localhost:6379/abc"])
def test_bad_redis_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        parse_redis_url(url)


def test_typed_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "12")
    assert env_bool("X_BOOL", False) is True
    assert env_int("X_INT", 0) == 12
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ConfigError, match="X_BOOL"):
        env_bool("X_BOOL", False)
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ConfigError, match="X_INT"):
        env_int("X_INT", 0)


def test_ml_device() -> None:
    assert ml_device("cpu") == "cpu"
    assert ml_device("cuda:1") == "cuda:1"
    assert ml_device("auto") in {"cpu", "cuda"}
    with pytest.raises(ConfigError, match="ML_DEVICE"):
        ml_device("tpu")


def test_secret_key_is_generated_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = secret_key(tmp_path)
    assert len(first) >= 50
    assert secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        secret_key(tmp_path)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "postgres://u@h:port/db"),
        ("REDIS_URL", "localhost"),
        ("DEBUG", "sometimes"),
        ("ML_DEVICE", "gpu0"),
    ],
)
def test_bad_configuration_stops_manage_py_with_the_variable_named(name: str, value: str, tmp_path: Path) -> None:
    env = {**os.environ, "LVIT_VAR_DIR": str(tmp_path), name: value}
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert f"configuration error: {name}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pacs_settings_are_optional_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PACS_URL", "PACS_USERNAME", "PACS_PASSWORD", "PACS_TOKEN", "PACS_NAME", "PACS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert not pacs_config().enabled  # make run needs no PACS
    monkeypatch.setenv("PACS_URL", "https://pacs.example.org:8443/dicom-web/")
    monkeypatch.setenv("PACS_USERNAME", "svc")
    monkeypatch.setenv("PACS_PASSWORD", "s3cret")
    config = pacs_config()
    assert (config.url, config.name, config.username, config.timeout) == (
        "https://pacs.example.org:8443/dicom-web",
        "pacs.example.org",
        "svc",
        30.0,
    )
    bad = {
        "ftp://pacs/dicom-web": "must be an http",
        "https://svc:pw@pacs/dicom-web": "must not hold credentials",
        "https://pacs/dicom-web?x=1": "query",
        "https://pacs:port/dicom-web": "malformed port",
    }
    for url, message in bad.items():
        monkeypatch.setenv("PACS_URL", url)
        with pytest.raises(ConfigError, match=message):
            pacs_config()
    monkeypatch.setenv("PACS_URL", "https://pacs/dicom-web")
    monkeypatch.delenv("PACS_PASSWORD")
    with pytest.raises(ConfigError, match="both PACS_USERNAME and PACS_PASSWORD"):
        pacs_config()
    monkeypatch.setenv("PACS_PASSWORD", "pw")
    monkeypatch.setenv("PACS_TOKEN", "t")
    with pytest.raises(ConfigError, match="not both"):
        pacs_config()
    monkeypatch.delenv("PACS_TOKEN")
    monkeypatch.setenv("PACS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="PACS_CA_BUNDLE"):
        pacs_config()
    monkeypatch.delenv("PACS_URL")
    monkeypatch.delenv("PACS_CA_BUNDLE")
    with pytest.raises(ConfigError, match="PACS_URL is not"):
        pacs_config()  # credentials without a PACS are a mistake


def test_text_engine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LVIT_TEXT_ENGINE``: auto takes OpenVINO where it is installed (it is, with the app's requirements); a
    value it does not know stops with the variable named."""
    from server.workers.conf import text_engine

    monkeypatch.delenv("LVIT_TEXT_ENGINE", raising=False)
    assert text_engine() == "openvino"
    monkeypatch.setenv("LVIT_TEXT_ENGINE", "Torch")
    assert text_engine() == "torch"
    monkeypatch.setenv("LVIT_TEXT_ENGINE", "tensorrt")
    with pytest.raises(ConfigError, match="LVIT_TEXT_ENGINE"):
        text_engine()


def test_starting_the_app_imports_neither_daphne_nor_the_ml_stack() -> None:
    """A worker's start-up (Django set up, the tasks imported): daphne/twisted (~1-2 s) load only for ``manage.py
    runserver``, torch and transformers only when a worker warms up or runs a task; imagecodecs (the 12-bit JPEG
    plugin) only when DICOM pixels are decoded."""
    code = (
        "import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'server.settings'); django.setup(); "
        "import server.workers.tasks; "
        "print(sorted(m for m in ('daphne', 'twisted', 'torch', 'transformers', 'imagecodecs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
