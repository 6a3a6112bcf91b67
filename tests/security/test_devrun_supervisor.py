"""Issue 13 item 5: killing the worker's main process stopped ``make run``'s web server and Redis too.

Runs the real launcher (``python -m server.devrun``, SQLite and the embedded Redis on free ports), kills the worker
and then the web server with SIGKILL, and checks each is started again while the others keep serving; then a
SIGTERM still stops everything.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from server import devrun
from tests.security.support_reliability import http, wait_for
from tests.support.devrun import ADMIN_PASSWORD, free_port, fresh_machine_env, port_open, start_devrun

pytestmark = pytest.mark.slow


def _pids(log: Path, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"started {name} \(pid (\d+)\)", log.read_text(errors="replace"))]


def _children(parent: int, needle: str) -> list[int]:
    """The pids of ``parent``'s child processes whose command line holds ``needle`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and needle in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _child(parent: int, needle: str) -> int | None:
    """The pid of one such child (the lowest), or None."""
    pids = _children(parent, needle)
    return pids[0] if pids else None


def _health(base: str) -> tuple[int, dict]:
    try:
        status, body, _ = http("GET", f"{base}/api/health/", timeout=10)
    except OSError:
        return 0, {}
    return status, body if isinstance(body, dict) else {}


def test_a_killed_child_is_restarted_and_the_rest_keeps_serving(tmp_path: Path) -> None:
    web, redis_port = free_port(), free_port()
    env = fresh_machine_env(tmp_path / "var", web, redis_port)
    base = f"http://127.0.0.1:{web}"
    log = tmp_path / "devrun.log"
    proc = start_devrun(env, log, timeout=300)
    try:
        worker_pid, web_pid = _child(proc.pid, "celery"), _child(proc.pid, "daphne")
        assert worker_pid and web_pid

        os.kill(worker_pid, signal.SIGKILL)
        # make run starts two worker pools (inference, training); the killed one is named in the log
        restarted = re.compile(rf"worker-\w+ \(pid {worker_pid}\) exited with code -9; restarting")
        wait_for(
            lambda: restarted.search(log.read_text(errors="replace")) or proc.poll() is not None,
            timeout=60,
            what="the worker to be started again",
        )
        assert proc.poll() is None, f"make run stopped:\n{log.read_text()[-2000:]}"
        wait_for(
            lambda: worker_pid not in _children(proc.pid, "celery") and len(_children(proc.pid, "celery")) >= 2,
            timeout=60,
            what="a new worker process in place of the killed one",
        )
        status, _ = _health(base)  # the web server kept serving meanwhile
        assert status in (200, 503)
        assert port_open(redis_port)
        # The new worker answers: health is all green again (it pings the workers).
        wait_for(lambda: _health(base)[0] == 200, timeout=180, what="health with the restarted worker")

        os.kill(web_pid, signal.SIGKILL)
        wait_for(
            lambda: _child(proc.pid, "daphne") not in (None, web_pid), timeout=60, what="the web server to restart"
        )
        wait_for(lambda: _health(base)[0] == 200, timeout=180, what="the restarted web server")
        status, body, _ = http(
            "POST", f"{base}/api/auth/token/", json_body={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert status == 200 and body["token"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    assert code == 0, log.read_text()[-3000:]
    for port in (web, redis_port):
        assert not port_open(port), f"port {port} still open after SIGTERM"
    for pid in _pids(log, "worker") + _pids(log, "web") + _pids(log, "redis"):
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived make run"


def test_backoff_doubles_and_resets_after_a_stable_run(tmp_path: Path) -> None:
    """supervise_once on a real short-lived process: restart delays 1, 2, 4 … capped at 30 s; a process that ran a
    minute before dying starts again after 1 s. (The clock is passed in; nothing here waits for the delays.)"""
    devrun._SPAWNED.clear()
    children = [devrun.spawn("quitter", [sys.executable, "-c", "raise SystemExit(3)"])]
    delays = []
    now = 1000.0
    for _ in range(7):
        children[0].wait(timeout=30)
        entry = devrun._SPAWNED[children[0].pid]
        entry.started_at = now  # it died at once
        devrun.supervise_once(children, now=now)
        delays.append(entry.restart_at - now)
        now = entry.restart_at
        first = children[0].pid
        devrun.supervise_once(children, now=now)  # its time came: started again
        assert children[0].pid != first
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    children[0].wait(timeout=30)
    entry = devrun._SPAWNED[children[0].pid]
    entry.started_at = now - 120  # this one ran two minutes
    devrun.supervise_once(children, now=now)
    assert entry.restart_at - now == 1
    devrun._SPAWNED.clear()
