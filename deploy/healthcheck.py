"""Container health check for a web replica: asks its own ``/api/health/`` and judges the answer.

``/api/health/`` answers 503 when any check fails, including "no Celery worker answered". A web replica whose
database and Redis are reachable is healthy even while the GPU workers (possibly on other hosts) are down, so by
default this script passes on ``database`` and ``redis`` and only reports the workers; ``--require-workers`` makes
them count too (for an end-to-end probe of the whole deployment).

The request carries what the production settings expect from the proxy: a ``Host`` taken from ``ALLOWED_HOSTS``
(else Django answers 400) and, when ``LVIT_BEHIND_TLS_PROXY`` is on, ``X-Forwarded-Proto: https`` (else
``SECURE_SSL_REDIRECT`` answers 301). Standard library only: it runs every few seconds and must start fast.

Exit status: 0 healthy, 1 unhealthy (the reason goes to stdout, which ``docker inspect`` shows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

TRUE = {"1", "true", "yes", "on"}


def request_host() -> str:
    """The first concrete host in ``ALLOWED_HOSTS`` (wildcards and leading-dot patterns skipped)."""
    for item in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = item.strip()
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"


def fetch_health(url: str, timeout: float) -> tuple[int, dict]:
    headers = {"Host": request_host(), "Accept": "application/json"}
    if os.environ.get("LVIT_BEHIND_TLS_PROXY", "").strip().lower() in TRUE:
        headers["X-Forwarded-Proto"] = "https"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:  # 503 still carries the per-check body
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"{}")
        except json.JSONDecodeError:
            return exc.code, {"error": body[:200].decode("utf-8", "replace")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LVIT_HEALTH_URL", "http://127.0.0.1:8000/api/health/"))
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--require-workers", action="store_true", help="fail too when no Celery worker answers")
    args = parser.parse_args(argv)

    try:
        status, body = fetch_health(args.url, args.timeout)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"unhealthy: {args.url}: {exc}")
        return 1
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict):
        print(f"unhealthy: HTTP {status} without health checks: {body}")
        return 1
    required = ["database", "redis"] + (["workers"] if args.require_workers else [])
    failed = [name for name in required if not (checks.get(name) or {}).get("ok")]
    summary = ", ".join(f"{name}={'ok' if (c or {}).get('ok') else 'down'}" for name, c in sorted(checks.items()))
    if failed:
        details = "; ".join(f"{name}: {(checks.get(name) or {}).get('detail', 'missing')}" for name in failed)
        print(f"unhealthy (HTTP {status}): {summary}; {details}")
        return 1
    print(f"healthy (HTTP {status}): {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
