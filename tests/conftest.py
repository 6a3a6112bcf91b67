"""Shared fixtures: where the real datasets live, and a fast failure when they are missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.config import PacsConfig
from tests.support.dicom_studies import LoadedPacs, load_test_pacs
from tests.support.orthanc import OrthancProcess, orthanc_missing

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


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    """One real PACS (Orthanc + DICOMweb) for the whole test session, on a free port with its own storage."""
    missing = orthanc_missing()
    if missing:
        pytest.fail(f"the PACS tests need Orthanc: {missing}")
    process = OrthancProcess(tmp_path_factory.mktemp("orthanc"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def test_pacs(orthanc: OrthancProcess, shared_data: Path) -> LoadedPacs:
    """The session's Orthanc loaded once with the test studies (see ``tests/support/dicom_studies.py``)."""
    return load_test_pacs(orthanc.upload, shared_data)


@pytest.fixture
def pacs_settings(settings: Any, orthanc: OrthancProcess) -> PacsConfig:
    """``settings.PACS`` pointing at the session's Orthanc, as ``PACS_URL`` + credentials would."""
    config = PacsConfig(
        url=orthanc.dicomweb_url, username=orthanc.username, password=orthanc.password, timeout=30.0, name="Orthanc"
    )
    settings.PACS = config
    return config
