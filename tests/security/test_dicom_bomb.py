"""Issue 13 item 1: a small DICOM of deeply nested sequences must not take the server down.

A 300-level file made pydicom's writer (``save_as``) recurse with a growing error message (3.3 GB), and an
undefined-length one overflows pydicom's reader (a 500); 3,000 levels killed the process. The bounded pre-scan
(``server/studio/dicom_guard.py``) refuses both with a 400 ``dicom_too_complex`` before pydicom sees them.
The API replay runs a real daphne server in a subprocess on the test database and watches its peak memory.
"""

from __future__ import annotations

from pathlib import Path

import pydicom.data
import pytest
from django.db import connection
from pydicom.data import get_testdata_file

from server.studio import dicom_guard, imaging
from tests.security.support_reliability import (
    WebServer,
    dicom_bomb,
    flat_dicom,
    http,
    max_rss_mb,
    multipart,
    nested_sequence,
    server_env,
    zip_of,
)
from tests.server.conftest import _media, owner_client, people  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def test_prescan_refuses_deep_nesting_without_recursion_or_memory() -> None:
    before = max_rss_mb()
    for levels in (33, 300, 3000, 30000):
        for defined in (False, True):
            with pytest.raises(dicom_guard.DicomTooComplex, match="LVIT_DICOM_MAX_DEPTH"):
                dicom_guard.dicom_check(dicom_bomb(levels, defined_length=defined))
    # Through the decoder the refusal is an ImageError, as every other bad upload.
    with pytest.raises(imaging.ImageError) as refused:
        imaging.decode_upload(dicom_bomb(3000), filename="bomb.dcm")
    assert refused.value.code == "dicom_too_complex"
    assert "nests sequences more than 32 levels" in refused.value.detail
    assert max_rss_mb() - before < 50, "the pre-scan must not hold more than the file and a bounded stack"


def test_prescan_limits_are_settings(settings) -> None:
    dicom_guard.dicom_check(dicom_bomb(30))  # within the default depth
    settings.LVIT_DICOM_MAX_DEPTH = 8
    with pytest.raises(dicom_guard.DicomTooComplex, match="more than 8 levels"):
        dicom_guard.dicom_check(dicom_bomb(9))
    dicom_guard.dicom_check(dicom_bomb(8))
    settings.LVIT_DICOM_MAX_DEPTH = 100
    settings.LVIT_DICOM_MAX_ELEMENTS = 60
    with pytest.raises(dicom_guard.DicomTooComplex, match="more than 60 data elements"):
        dicom_guard.dicom_check(dicom_bomb(30))


def test_prescan_accepts_every_pydicom_test_file() -> None:
    """No false refusal: the DICOM files pydicom ships (CT, MR, SR, RT, compressed, big endian, deflated, odd ones)
    pass the pre-scan, and the ones the decoder read before still decode."""
    files = [p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file()]
    assert len(files) > 40
    for path in files:
        dicom_guard.dicom_check(path.read_bytes())
    decoded = imaging.decode_upload(Path(get_testdata_file("CT_small.dcm")).read_bytes(), filename="ct.dcm")
    assert decoded.original_format == "dicom"
    decoded = imaging.decode_upload(dicom_bomb(5), filename="five.dcm")  # a few levels are fine
    assert (decoded.width, decoded.height) == (32, 32)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.django_db(transaction=True)
def test_bomb_upload_through_a_live_server_is_a_400_with_nothing_stored(tmp_path: Path) -> None:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from server.studio.models import Case
    from server.studio.services.projects import project_create

    owner = get_user_model().objects.create_user("bomb-owner", password="not used here")
    token = AuthToken.objects.create(user=owner)[1]
    project = project_create(user=owner, name="Bombs", template="lung-infection")
    db = connection.settings_dict
    assert db["ENGINE"].endswith("postgresql"), "this replay serves the PostgreSQL test database"
    media = tmp_path / "media"
    env = server_env(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        LVIT_VAR_DIR=str(tmp_path / "var"),
        LVIT_MEDIA_ROOT=str(media),
    )
    server = WebServer(env, tmp_path / "daphne.log").start()
    try:
        url = f"{server.url}/api/projects/{project.pk}/cases/"
        status, _, _ = http("GET", url, token=token)
        assert status == 200
        baseline = _peak_rss_mb(server.proc.pid)
        uploads = []
        for levels in (300, 3000):
            for defined in (False, True):
                bomb = dicom_bomb(levels, defined_length=defined)
                uploads.append((f"bomb-{levels}-{int(defined)}.dcm", bomb))
                uploads.append((f"bombs-{levels}-{int(defined)}.zip", zip_of({"a/inner.dcm": bomb})))
        for name, data in uploads:
            body, ctype = multipart({}, [("image", name, data)])
            status, answer, _ = http("POST", url, token=token, body=body, content_type=ctype)
            assert status == 400, (name, status, str(answer)[:500])
            assert answer["error"] == "dicom_too_complex", (name, answer)
            assert "LVIT_DICOM_MAX_DEPTH" in str(answer["detail"]), answer
            if name.endswith(".zip"):
                assert answer["detail"]["errors"][0]["file"] == f"{name}/a/inner.dcm"
        assert server.proc.poll() is None, "the web server died"
        growth = _peak_rss_mb(server.proc.pid) - baseline
        assert growth < 150, f"the web server's peak memory grew by {growth:.0f} MiB on {len(uploads)} small files"
        assert Case.objects.filter(project=project).count() == 0
        assert not [p for p in media.rglob("*") if p.is_file()], "a refused upload left files behind"
        # The same server still takes a real DICOM.
        body, ctype = multipart({}, [("image", "ok.dcm", flat_dicom())])
        status, answer, _ = http("POST", url, token=token, body=body, content_type=ctype)
        assert status == 201, answer
        assert Case.objects.filter(project=project).count() == 1
    finally:
        server.stop()


@pytest.mark.django_db
def test_pacs_retrieval_is_scanned_before_pydicom_parses_it(orthanc, pacs_settings, people, owner_client, settings):  # noqa: F811
    """A PACS is outside the app's control: a nested instance it holds is refused with the same 400 and nothing is
    imported. (40 levels: Orthanc itself crashes on 300, so the replay uses a depth it stores.)"""
    import io

    import pydicom
    from django.urls import reverse

    from server.studio.models import Case, PacsSource

    bomb = dicom_bomb(40)
    study_uid = pydicom.dcmread(io.BytesIO(bomb), stop_before_pixels=True).StudyInstanceUID
    orthanc.upload(bomb)
    try:
        url = reverse("studio-pacs-import", args=[people.project.pk])
        response = owner_client.post(url, {"study_uid": study_uid}, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "dicom_too_complex"
        assert "more than 32 levels" in response.json()["detail"]
        assert not Case.objects.filter(project=people.project).exists() and not PacsSource.objects.exists()
        assert not [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    finally:
        orthanc.delete_study(study_uid)


def test_framing_the_scan_cannot_follow_is_refused_not_skipped() -> None:
    """A stray item before a deep nest: stopping the scan there would let pydicom read the nest unchecked."""
    import struct

    flat = flat_dicom()
    at = flat.index(b"\xe0\x7f\x10\x00")  # Pixel Data
    stray = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    crafted = flat[:at] + stray + nested_sequence(300) + flat[at:]
    with pytest.raises(imaging.ImageError) as refused:
        imaging.decode_upload(crafted, filename="stray.dcm")
    assert refused.value.code in ("corrupt_image", "dicom_too_complex")
    assert "sequence item outside a sequence" in refused.value.detail
