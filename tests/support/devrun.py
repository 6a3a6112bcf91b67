"""``make run`` (``python -m server.devrun``) as the tests start it: free ports, a fresh machine's environment, start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "a long test password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def fresh_machine_env(var_dir: Path, web: int, redis_port: int) -> dict[str, str]:
    """This process's environment without the services the test suite points at (a fresh machine has neither a
    database nor a Redis URL), the app's data in ``var_dir``, an admin ``admin`` / :data:`ADMIN_PASSWORD`, no
    bootstrap training (training on CPU is covered by the worker tests)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        LVIT_VAR_DIR=str(var_dir),
        PORT=str(web),
        LVIT_REDIS_PORT=str(redis_port),
        LVIT_ADMIN_USER="admin",
        LVIT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        LVIT_BOOTSTRAP_MODEL="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_devrun(env: dict[str, str], log: Path, timeout: float = 240) -> subprocess.Popen:
    """Start ``python -m server.devrun`` and wait until it says it is up; fail with its log if it exits or hangs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.devrun"], cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        if "is up at" in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            pytest.fail(f"launcher exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"launcher did not come up in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
