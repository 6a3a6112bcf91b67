"""Case flow in real Chromium, no worker needed: upload with reports (the template form for one scan, a CSV or XLSX
of reports for many, errors that name the file and stay), accepting without a report (a confirmation the server
records), Reject only for an uncorrected proposal, the mask history with its diff overlay and "restore as new
version", and the editor's brush, opacity and layer choices kept between cases.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from server.studio.models import AuditEvent, Case, CaseState, MaskKind, ModelVersion

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-42"
SENTENCE = "Unilateral pulmonary infection, one infected area, lower right lung."


def _login(page: Any, username: str = "dr.lee") -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def _open(page: Any, case: Case) -> None:
    page.goto(f"/projects/{case.project_id}/cases/{case.pk}/")
    page.locator("#case-state.badge").wait_for()
    page.wait_for_function("document.getElementById('stage-status').textContent === ''")


def _stored(mv: Any) -> np.ndarray:
    with mv.png.open("rb") as fh:
        return np.array(Image.open(io.BytesIO(fh.read())).convert("L")) > 127


def _xlsx(rows: list[tuple[str, str]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Image", "Description"])
    for r in rows:
        ws.append(list(r))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@pytest.fixture
def world(seeded_templates: None, shared_data: Path) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from server.studio.services.projects import project_create

    User = get_user_model()
    lee = User.objects.create_user(username="dr.lee", password=PASSWORD)
    project = project_create(user=lee, name="Flow", template="lung-infection")
    img = shared_data / "covid_ct" / "Train_Folder" / "img"
    return {"lee": lee, "project": project, "images": {s: (img / f"{s}.png").read_bytes() for s in "012345"}}


def _cases(world: dict[str, Any], names: list[str], reports: dict[str, str] | None = None) -> list[Case]:
    from server.studio.services.cases import case_create_many, case_prepare

    items = [
        case_prepare(
            project=world["project"],
            data=world["images"][str(i)],
            filename=name,
            report_text=(reports or {}).get(name),
        )
        for i, name in enumerate(names)
    ]
    return case_create_many(project=world["project"], user=world["lee"], items=items, notify=False)


def test_upload_with_reports(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    project = world["project"]
    images = world["images"]
    _login(page)
    page.goto(f"/projects/{project.pk}/")
    page.locator("#case-rows").wait_for()

    # --- one scan with its report written in the template's form.
    page.set_input_files("#upload-files", files=[{"name": "one.png", "mimeType": "image/png", "buffer": images["0"]}])
    page.get_by_label("This scan's report, here (one image)").check()
    report = page.locator("#upload-report-form")
    report.get_by_label("Unilateral").check()
    report.get_by_label("one infected area").check()
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Exactly one of Left lung, Right lung must be given").wait_for()
    assert not Case.objects.filter(project=project).exists(), "an incomplete report uploads nothing"
    report.locator('fieldset[data-field="right_zones"]').get_by_label("lower").check()
    assert page.locator("#upload-sentence").inner_text() == SENTENCE
    shot("01-upload-with-report-form")
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Uploaded 1 case. 1 with a report.").wait_for()
    assert Case.objects.get(project=project, name="one.png").report.text == SENTENCE

    # --- many scans with a CSV of reports: the keys may be image names or LViT's mask_ names.
    page.set_input_files(
        "#upload-files",
        files=[{"name": f"ct-{s}.png", "mimeType": "image/png", "buffer": images[s]} for s in "123"],
    )
    assert page.get_by_label("This scan's report, here (one image)").is_disabled()
    page.get_by_label("A CSV or Excel file of reports").check()
    csv = f'Image,Description\nct-1.png,"{SENTENCE}"\nmask_ct-2.png,No pulmonary infection.\n'
    page.set_input_files("#upload-reports", files=[{"name": "r.csv", "mimeType": "text/csv", "buffer": csv.encode()}])
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Uploaded 3 cases. 2 with a report.").wait_for()
    by_name = {c.name: c for c in Case.objects.filter(project=project).select_related("report")}
    assert by_name["ct-1.png"].report.fields == {
        "laterality": "unilateral",
        "areas": "one",
        "right_zones": ["lower"],
    }
    assert by_name["ct-2.png"].report.text == "No pulmonary infection."
    assert by_name["ct-3.png"].report is None

    # --- an XLSX with a row that names no uploaded image: nothing stored, the row named, the error stays.
    page.set_input_files(
        "#upload-files",
        files=[{"name": f"x-{s}.png", "mimeType": "image/png", "buffer": images[s]} for s in "45"],
    )
    page.get_by_label("A CSV or Excel file of reports").check()
    xlsx = _xlsx([("x-4.png", SENTENCE), ("nobody.png", SENTENCE)])
    page.set_input_files(
        "#upload-reports",
        files=[{"name": "r.xlsx", "mimeType": "application/octet-stream", "buffer": xlsx}],
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    errors = page.locator("#upload-errors")
    errors.get_by_text("nobody.png").wait_for()
    assert not Case.objects.filter(project=project, name__startswith="x-").exists()

    # --- a broken image among good ones is named, and the message does not vanish.
    page.set_input_files(
        "#upload-files",
        files=[
            {"name": "good.png", "mimeType": "image/png", "buffer": images["4"]},
            {"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG but not really"},
        ],
    )
    page.get_by_label("None now (write them in the editor)").check()
    page.get_by_role("button", name="Upload", exact=True).click()
    errors.get_by_text("broken.png").wait_for()
    page.wait_for_timeout(9000)
    assert errors.is_visible() and "broken.png" in errors.inner_text()
    assert not Case.objects.filter(project=project, name="good.png").exists()
    shot("02-upload-error-stays")
    unexpected = [e for e in page.console_errors if "400 (Bad Request)" not in e]
    assert unexpected == [], unexpected


def test_accept_without_report_is_confirmed_and_recorded(page, web_server, world, artifacts) -> None:
    (case,) = _cases(world, ["bare.png"])
    _login(page)
    _open(page, case)
    page.get_by_role("button", name="Accept", exact=True).click()
    dialog = page.locator("#no-report-dialog")
    dialog.wait_for()
    page.screenshot(path=str(artifacts / "01-confirm-no-report.png"))
    dialog.get_by_role("button", name="Write the report first").click()
    page.get_by_text("Not accepted: write the report first.").wait_for()
    assert Case.objects.get(pk=case.pk).state != CaseState.LABELED
    page.get_by_role("button", name="Accept", exact=True).click()
    dialog.get_by_role("button", name="Accept without a report").click()
    page.get_by_text(re.compile(r"Accepted as version \d+ \(without a report\)")).wait_for()
    case.refresh_from_db()
    assert case.state == CaseState.LABELED
    assert case.head_mask.stats.get("accepted_without_report") is True
    event = AuditEvent.objects.get(project=case.project, action="mask.accepted")
    assert event.data.get("without_report") is True
    assert page.console_errors == [], page.console_errors


def test_reject_applies_only_to_an_uncorrected_proposal(page, web_server, world, artifacts) -> None:
    from server.studio.services.masks import mask_create_proposal

    fresh, corrected = _cases(world, ["fresh.png", "corrected.png"])
    model = ModelVersion.objects.create(project=world["project"], number=2, checkpoint="none.pt", status="retired")
    for c in (fresh, corrected):
        m = np.zeros((c.height, c.width), bool)
        m[10:40, 10:40] = True
        mask_create_proposal(case=c, model_version=model, array=m)
    _login(page)
    _open(page, corrected)
    page.keyboard.press("Control+s")  # a saved correction on top of the proposal
    page.get_by_text(re.compile(r"Saved as version 2")).wait_for()
    assert page.get_by_role("button", name="Reject proposal").is_disabled()
    _open(page, fresh)
    page.get_by_role("button", name="Reject proposal").click()
    page.locator("#reject-dialog").wait_for()
    page.get_by_label("Reason (optional)").fill("lesion on the other side")
    page.locator("#reject-dialog").get_by_role("button", name="Reject proposal").click()
    page.locator("#case-state.badge.unlabeled").wait_for()
    assert page.locator("#case-meta").inner_text().find("no mask yet") >= 0
    assert page.get_by_role("button", name="Reject proposal").is_disabled()
    fresh.refresh_from_db()
    assert fresh.state == CaseState.UNLABELED and fresh.head_mask is None
    assert fresh.masks.count() == 1, "the rejected proposal stays in the history"
    assert AuditEvent.objects.get(action="mask.rejected").data["reason"] == "lesion on the other side"
    assert Case.objects.get(pk=corrected.pk).state == CaseState.IN_REVIEW
    assert page.console_errors == [], page.console_errors


def test_history_diff_and_restore_as_new_version(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    from server.studio.services.masks import mask_create_proposal, mask_save

    (case,) = _cases(world, ["history.png"], reports={"history.png": SENTENCE})
    model = ModelVersion.objects.create(project=world["project"], number=3, checkpoint="none.pt", status="retired")
    first = np.zeros((case.height, case.width), np.uint8)
    first[20:60, 20:60] = 255
    mask_create_proposal(case=case, model_version=model, array=first > 0)
    second = first.copy()
    second[20:60, 20:40] = 0  # removes 40 x 20
    second[80:90, 80:100] = 255  # adds 10 x 20
    buf = io.BytesIO()
    Image.fromarray(second).save(buf, format="PNG")
    mask_save(case=case, user=world["lee"], png_bytes=buf.getvalue(), base_version=1)

    _login(page)
    _open(page, case)
    page.locator("#history summary").click()
    item = page.locator('#history-list li[data-version="2"]')
    assert "dr.lee" in item.inner_text() and "+200 / -800 px vs v1" in item.inner_text(), item.inner_text()
    assert "model v3" in page.locator('#history-list li[data-version="1"]').inner_text()
    item.get_by_role("button", name="Compare with v1").click()
    page.get_by_text("v2 vs v1: +200 px added (green), -800 px removed (magenta)").wait_for()
    shot("01-history-diff")
    item.get_by_role("button", name="Compare with v1").click()
    assert page.locator("#stage-status").inner_text() == ""

    page.on("dialog", lambda d: d.accept())
    page.locator('#history-list li[data-version="1"]').get_by_role("button", name="Restore as new version").click()
    page.get_by_text("Version 1 restored as version 3.").wait_for()
    case.refresh_from_db()
    head = case.head_mask
    assert head.version == 3 and head.kind == MaskKind.CORRECTION and head.stats.get("restored_from") == 1
    assert np.array_equal(_stored(head), first > 0)
    assert case.masks.count() == 3, "restoring adds a version; nothing is overwritten"
    assert page.locator('#history-list li[data-version="3"]').inner_text().find("restored from v1") >= 0
    assert AuditEvent.objects.filter(action="mask.restored").count() == 1
    shot("02-restored")
    assert page.console_errors == [], page.console_errors


def test_brush_opacity_and_layers_persist_between_cases(page, web_server, world, artifacts) -> None:
    a, b = _cases(world, ["a.png", "b.png"])
    _login(page)
    _open(page, a)
    page.locator("#canvas").focus()
    for _ in range(4):
        page.keyboard.press("]")
    size = page.locator("#brush-size-value").inner_text()
    page.get_by_label("Mask opacity").fill("80")
    page.get_by_label("Outline only").check()
    page.get_by_label("Zones").uncheck()
    _open(page, b)
    assert page.locator("#brush-size-value").inner_text() == size != "6"
    assert page.get_by_label("Mask opacity").input_value() == "80"
    assert page.get_by_label("Outline only").is_checked()
    assert not page.get_by_label("Zones").is_checked()
    assert page.console_errors == [], page.console_errors


def test_case_n_of_n_and_previous_case(page, web_server, world, artifacts) -> None:
    _cases(world, ["n1.png", "n2.png", "n3.png"])
    _login(page)
    page.goto(f"/projects/{world['project'].pk}/")
    page.locator("tr[data-case]").nth(2).wait_for()
    order = page.eval_on_selector_all("tr[data-case]", "rows => rows.map((r) => Number(r.dataset.case))")
    page.locator(f'tr[data-case="{order[1]}"]').get_by_role("link").click()
    page.get_by_text("Case 2 of 3").wait_for()
    assert page.get_by_role("button", name="Previous").is_disabled(), "nothing opened before in this session"
    page.get_by_role("link", name="Worklist").click()
    page.locator(f'tr[data-case="{order[2]}"]').get_by_role("link").click()
    page.get_by_text("Case 3 of 3").wait_for()
    page.get_by_role("button", name="Previous").click()
    page.wait_for_url(re.compile(rf"/cases/{order[1]}/$"))
    page.get_by_text("Case 2 of 3").wait_for()
    page.screenshot(path=str(artifacts / "01-previous-case.png"))
    assert page.console_errors == [], page.console_errors
