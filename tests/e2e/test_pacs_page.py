"""The PACS page in real Chromium against the session's real Orthanc: search, open a study, import, see the case's
source, store its accepted mask back as a DICOM SEG from the export page."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from server.config import PacsConfig
from server.studio import dicom_seg, dicomweb
from server.studio.models import Case, PacsSegStore, PacsSource, Project
from server.studio.services.masks import mask_accept
from server.studio.services.projects import project_create
from tests.server.conftest import png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PASSWORD = "pacs-page-pass-42"


@pytest.fixture(scope="module", autouse=True)
def pacs_env(orthanc: Any) -> Iterator[None]:
    """The web server of this module connects the session's Orthanc through the environment, as in production
    (set before the module's daphne starts)."""
    values = {
        "PACS_URL": orthanc.dicomweb_url,
        "PACS_USERNAME": orthanc.username,
        "PACS_PASSWORD": orthanc.password,
        "PACS_NAME": "Orthanc",
    }
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_search_import_and_write_back(page, web_server, worker, test_pacs, orthanc, settings, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    settings.PACS = PacsConfig(
        url=orthanc.dicomweb_url, username=orthanc.username, password=orthanc.password, name="Orthanc"
    )
    user = get_user_model().objects.create_user("dr.pacs", password=PASSWORD)
    project = project_create(user=user, name="Chest films", template="lung-infection")
    page.goto("/login/")
    page.get_by_label("Username").fill("dr.pacs")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))

    page.goto(f"/projects/{project.pk}/pacs/")
    page.get_by_label("Patient ID").fill(test_pacs.cxr.patient_id)
    page.get_by_role("button", name="Search").click()
    row = page.locator(f'tr[data-study="{test_pacs.cxr_study}"]')
    row.wait_for()
    assert "Doe, Jane" in row.inner_text() and "ACC-CXR-1001" in row.inner_text()
    shot("01-search")
    row.get_by_role("button", name="Open").click()
    page.locator("#pacs-series li.instance.import").nth(1).wait_for()
    assert page.locator("#pacs-series input[type=checkbox]:checked").count() == 2
    page.get_by_role("button", name="Import selected").click()
    page.locator("#pacs-imported").wait_for()
    assert page.locator("#pacs-imported").inner_text() == "Imported 2 case(s)."
    page.locator("#pacs-series li.instance.imported").nth(1).wait_for()  # the study now links to its cases
    shot("02-imported")
    cases = list(Case.objects.filter(project=project).order_by("id"))
    assert len(cases) == 2 and PacsSource.objects.filter(case__in=cases).count() == 2

    # the case page says where the case came from
    page.locator("#pacs-result a").first.click()
    page.wait_for_url(re.compile(r"/cases/\d+/$"))
    page.get_by_text("from PACS Orthanc (DX)").wait_for()
    shot("03-case-source")

    # an accepted mask goes back to the PACS from the export page
    case = cases[0]
    mask = np.zeros((case.height, case.width), np.uint8)
    mask[50:120, 60:200] = 255
    mask_accept(case=case, user=user, png_bytes=png_bytes(mask), without_report=True)
    page.goto(f"/projects/{project.pk}/export/")
    page.get_by_role("button", name="Store accepted masks in the PACS").click()
    page.get_by_text("Stored 1 segmentation(s).").wait_for()
    shot("04-stored")
    record = PacsSegStore.objects.get(case=case, status="stored")
    source = PacsSource.objects.get(case=case)
    try:
        data = dicomweb.instance_retrieve(
            study_uid=source.study_uid, series_uid=record.series_uid, sop_uid=record.sop_uid
        )
        assert np.array_equal(dicom_seg.seg_mask(data, source_sop_uid=source.sop_uid), mask > 0)
    finally:
        orthanc.delete_series(record.series_uid)
    page.get_by_label("Store each accepted mask in the PACS when it is accepted").check()
    page.get_by_text("Accepted masks will be stored in the PACS").wait_for()
    assert Project.objects.get(pk=project.pk).pacs_store_on_accept
    assert page.console_errors == []
