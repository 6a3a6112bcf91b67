"""One real ``celery worker`` subprocess, for the test suites and the benchmarks that need a live worker.

What differs between users is a parameter: the Celery app module, the queues, the node name (fresh for every
start), the environment and the folder for the logs. Each start writes its own log (``worker-<n>.log``), so a
restarted worker's output does not overwrite the killed one's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``celery -A <app> worker -Q <queues> --pool=solo``; ``start``/``stop`` (SIGTERM, then SIGKILL) and ``kill``
    (SIGKILL straight away, as a crashed host would). ``node_name(n)`` names the node for the n-th start (None: the
    worker's default name); ``node`` is the current one, ``starts`` counts the starts, ``log_path`` is this start's
    log."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        app: str = "server",
        queues: Sequence[str] = ("inference", "training", "default"),
        node_name: Callable[[int], str] | None = None,
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.app = app
        self.queues = tuple(queues)
        self.node_name = node_name
        self.node = ""
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> None:
        """Start the worker and wait until its log says `` ready.``; raise (with the log) if it exits or times out."""
        assert not self.alive, "worker already running"
        self.starts += 1
        self.node = self.node_name(self.starts) if self.node_name else ""
        self.log_path = self.log_dir / f"worker-{self.starts}.log"
        cmd = [sys.executable, "-m", "celery", "-A", self.app, "worker", "-Q", ",".join(self.queues), "--pool=solo"]
        if self.node:
            cmd += ["-n", self.node]
        cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}:\n{self.log()}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready after {timeout}s:\n{self.log()}")

    def log(self, tail: int = 6000) -> str:
        """The end of the current start's log ("" before the first start)."""
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, no final write."""
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (warm shutdown: the running task may finish), SIGKILL if it is still there after ``timeout``."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
