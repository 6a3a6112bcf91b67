"""Shared fixtures: where the real datasets live, and a fast failure when they are missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real datasets in the LViT layout: ``$LVIT_SHARED_DATA`` or ``../shared/data`` beside the repo."""
    env = os.environ.get("LVIT_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "monuseg").is_dir():
        pytest.fail(
            f"real datasets not found at {path}; set LVIT_SHARED_DATA to the folder holding monuseg/, covid_ct/"
        )
    return path


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Give each pytest process its own PostgreSQL test database, so parallel runs never drop each other's."""
    from django.conf import settings

    suffix = os.environ.get("LVIT_TEST_DB_SUFFIX") or f"p{os.getpid()}"
    for db in settings.DATABASES.values():
        if db["ENGINE"].endswith("postgresql"):
            test = db.setdefault("TEST", {})
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{suffix}"


def _uses_database(request: pytest.FixtureRequest) -> str | None:
    """Which database fixture the test uses: "transactional_db", "db", or None."""
    names = set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" in names or "live_server" in names or (marker and marker.kwargs.get("transaction")):
        return "transactional_db"
    if marker is not None or "db" in names:
        return "db"
    return None


@pytest.fixture(autouse=True)
def seeded_templates(request: pytest.FixtureRequest) -> None:
    """Put back the report templates a data migration seeds: a transactional test's flush deletes them."""
    fixture = _uses_database(request)
    if fixture is None:
        return
    request.getfixturevalue(fixture)
    from server.studio.reports import seed_templates

    seed_templates()
