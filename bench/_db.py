"""PostgreSQL helpers shared by the benchmarks."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse


def psql(base_url: str, sql: str) -> None:
    """Run one statement in autocommit (CREATE/DROP DATABASE cannot run in a transaction)."""
    import psycopg2

    parsed = urlparse(base_url)
    conn = psycopg2.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password or None,
        dbname=parsed.path.lstrip("/") or "postgres",
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def scratch_url(base_url: str, name: str) -> str:
    """``base_url`` with its database replaced by ``name``."""
    from urllib.parse import urlunparse

    return urlunparse(urlparse(base_url)._replace(path=f"/{name}"))


def scratch_django(name: str, *, prefix: str, why: str, **env: str) -> tuple[str, Path]:
    """Create the scratch database ``name`` (dropped first if left over) on the PostgreSQL server that
    ``DATABASE_URL`` names, point this process's Django at it with media and checkpoints in a fresh temporary
    folder (plus ``env``), set Django up and migrate. Worker subprocesses started with ``os.environ`` share it.
    Returns (the original ``DATABASE_URL``, the temporary folder); undo with :func:`drop_scratch`."""
    import django
    from django.core.management import call_command

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit(f"DATABASE_URL must name a PostgreSQL server ({why})")
    psql(base, f"DROP DATABASE IF EXISTS {name}")
    psql(base, f"CREATE DATABASE {name}")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        DATABASE_URL=scratch_url(base, name),
        LVIT_MEDIA_ROOT=str(tmp / "media"),
        LVIT_CHECKPOINT_CACHE_DIR=str(tmp / "checkpoints"),
        DJANGO_SETTINGS_MODULE="server.settings",
        **env,
    )
    django.setup()
    call_command("migrate", verbosity=0)
    return base, tmp


def drop_scratch(base_url: str, name: str) -> None:
    """Close this process's connections and drop the scratch database."""
    from django.db import connections

    connections.close_all()
    psql(base_url, f"DROP DATABASE IF EXISTS {name}")
