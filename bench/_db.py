"""PostgreSQL helpers shared by the benchmarks."""

from __future__ import annotations

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
