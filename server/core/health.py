"""Reachability checks for the database, Redis and the Celery workers."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection

from server.celery import app


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    ms: float


def _timed(name: str, fn) -> Check:
    start = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:  # a health check reports every failure instead of raising
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return Check(name=name, ok=ok, detail=detail, ms=round((time.perf_counter() - start) * 1000, 1))


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
        return "pong"
    finally:
        client.close()


def check_workers(timeout: float = 1.5) -> str:
    replies = app.control.ping(timeout=timeout)
    if not replies:
        raise RuntimeError("no Celery worker answered; start one with `celery -A server worker -Q gpu,default`")
    names = sorted(name for reply in replies for name in reply)
    return f"{len(names)} worker(s): {', '.join(names)}"


def run_checks() -> list[Check]:
    checks = [_timed("database", check_database), _timed("redis", check_redis)]
    if checks[1].ok:
        checks.append(_timed("workers", check_workers))
    else:
        checks.append(Check("workers", False, "not checked: Redis (the broker) is unreachable", 0.0))
    return checks
