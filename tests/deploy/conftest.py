"""Fixtures for the deployment tests: a real S3 endpoint (moto's server process) and production-like environments."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop one process this test started (SIGTERM, then SIGKILL), by its own handle."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def env_example() -> dict[str, str]:
    """The active ``NAME=value`` lines of ``deploy/.env.example``."""
    values = {}
    for line in (REPO / "deploy" / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def base_env(var_dir: Path) -> dict[str, str]:
    """A clean environment (no variables inherited from the test run) with the interpreter's PATH."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(var_dir)),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "LVIT_VAR_DIR": str(var_dir),
        "DJANGO_SETTINGS_MODULE": "server.settings",
        "ML_DEVICE": "cpu",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("LVIT_SHARED_DATA", "HF_HOME", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def production_env(var_dir: Path) -> dict[str, str]:
    """``.env.example`` as shipped, with a real random SECRET_KEY and this machine's paths."""
    env = base_env(var_dir)
    env.update(env_example())
    env["SECRET_KEY"] = secrets.token_urlsafe(64)
    return env


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str = "lvit-test-key"
    secret_key: str = "lvit-test-secret"
    region: str = "us-east-1"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "LVIT_STORAGE": "s3",
            "LVIT_S3_BUCKET": bucket,
            "LVIT_S3_ENDPOINT_URL": self.url,
            "LVIT_S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """moto's S3 server as its own process on 127.0.0.1, addressed as ``localhost`` so that only path-style
    requests work (``bucket.localhost`` does not resolve), as with MinIO in a compose network."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(PYTHON).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
        )
    try:
        wait_for_port("127.0.0.1", port, 30, proc)
        yield S3Endpoint(url=f"http://localhost:{port}")
    finally:
        stop(proc)
