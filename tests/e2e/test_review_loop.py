"""The whole human-in-the-loop cycle in real Chromium against a real server, worker, PostgreSQL and Redis.

One scenario, in the order a clinician and an admin live it: sign in, upload a CT slice, write the structured
report, see the model's proposal, paint a correction (with undo/redo), survive a save conflict without losing
the drawing, accept, start retraining and watch its progress, see the new model version, export the dataset.
Screenshots of every page go to ``test-artifacts/e2e/<test name>/``.

Models are real LViT-T networks at 32x32: honest for the pipeline, tiny for CPUs.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from server.core.models import Membership, Role
from server.jobs.models import Job, JobStatus
from server.studio.models import Case, CaseState, JobKind, MaskKind, ModelVersion
from tests.support.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TEST_IMG_SIZE = 32  # LViT-T at 32x32: a real network, fast on CPU

PASSWORD = "correct-horse-42"
SENTENCE = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


def _png(path: Path) -> bytes:
    return path.read_bytes()


def _mask_array(mv: Any) -> np.ndarray:
    with mv.png.open("rb") as fh:
        return np.array(Image.open(io.BytesIO(fh.read())).convert("L")) > 127


def _setup(shared_data: Path, tmp_path: Path) -> dict[str, Any]:
    """Two clinicians, a lung-infection project with an active (untrained) LViT-T and two accepted CT slices."""
    from django.contrib.auth import get_user_model

    from ml.config import LViTConfig
    from ml.models import build_model
    from ml.predict import save_checkpoint
    from server.studio.services.cases import case_create_many, case_prepare
    from server.studio.services.masks import mask_save
    from server.studio.services.projects import project_create
    from server.studio.services.registry import model_version_create

    User = get_user_model()
    admin = User.objects.create_user(username="dr.admin", password=PASSWORD)
    other = User.objects.create_user(username="dr.other", password=PASSWORD)
    project = project_create(
        user=admin, name="COVID CT review", template="lung-infection", description="Chest CT slices, lung infection"
    )
    Membership.objects.create(project=project, user=other, role=Role.ANNOTATOR)

    torch.manual_seed(0)
    cfg = LViTConfig(img_size=TEST_IMG_SIZE)
    ckpt = save_checkpoint(tmp_path / "v1.pt", build_model(cfg), cfg)
    v1 = model_version_create(
        project=project, checkpoint=ckpt, config={"model": cfg.to_dict()}, metrics={}, parent=None, training_job=None
    )
    ModelVersion.objects.filter(pk=v1.pk).update(status="active")

    root = shared_data / "covid_ct" / "Train_Folder"
    texts = dict(line.split(",", 1) for line in (root / "Train_text.csv").read_text().splitlines()[1:] if line.strip())
    for stem in ("0", "1"):
        item = case_prepare(
            project=project,
            data=_png(root / "img" / f"{stem}.png"),
            filename=f"ct-{stem}.png",
            report_text=texts[f"mask_{stem}.png"].strip().strip('"'),
        )
        (case,) = case_create_many(project=project, user=admin, items=[item], split="train", notify=False)
        mask_save(
            case=case,
            user=admin,
            png_bytes=_png(root / "labelcol" / f"mask_{stem}.png"),
            base_version=None,
            accept=True,
        )
    return {"admin": admin, "other": other, "project": project, "upload": root / "img" / "2.png"}


def _proposals_idle(case: Case) -> bool:
    busy = Job.objects.filter(case=case, kind=JobKind.PROPOSAL, status__in=[JobStatus.PENDING, JobStatus.RUNNING])
    return not busy.exists()


def _image_pixel_at(page: Any, x: float, y: float) -> tuple[int, int]:
    """Hover the canvas and read the image pixel the editor reports under the pointer."""
    page.mouse.move(x, y)
    text = page.locator("#cursor-pos").inner_text()
    m = re.fullmatch(r"x (\d+)\s+y (\d+)", text.strip())
    assert m, f"no cursor position shown: {text!r}"
    return int(m.group(1)), int(m.group(2))


def _stroke(page: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def test_review_correct_accept_retrain_export(page, worker, shared_data, artifacts, tmp_path) -> None:
    ctx = _setup(shared_data, tmp_path)
    project = ctx["project"]
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731

    # --- sign in ---------------------------------------------------------------------------------------------
    page.goto("/")
    page.wait_for_url(re.compile(r"/login/"))
    shot("01-login")
    page.get_by_label("Username").fill("dr.admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong username or password").wait_for()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # --- projects → worklist → upload ----------------------------------------------------------------------
    card = page.locator(f'[data-project="{project.pk}"]')
    card.wait_for()
    assert "2 cases" in card.inner_text() and "admin" in card.inner_text()
    shot("02-projects")
    card.click()
    page.wait_for_url(re.compile(rf"/projects/{project.pk}/$"))
    page.locator("tr[data-case]").first.wait_for()
    assert page.locator("tr[data-case]").count() == 2
    page.set_input_files("#upload-files", str(ctx["upload"]))
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Uploaded 1 case.").wait_for()
    row = page.locator("tr[data-case]", has_text="2.png")
    row.wait_for()
    case = Case.objects.get(project=project, name="2.png")
    page.get_by_label("State").select_option("labeled")
    page.wait_for_function("document.querySelectorAll('tr[data-case]').length === 2")
    page.get_by_label("State").select_option("")
    page.locator("tr[data-case]").nth(2).wait_for()

    # --- case editor: report, proposal ------------------------------------------------------------------
    row.locator(".badge.proposed").wait_for(timeout=120_000)  # the worklist follows the project's websocket
    shot("03-worklist")
    wait_for(lambda: _proposals_idle(case), 120, "first proposal")
    row.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/cases/{case.pk}/$"))
    page.locator("#case-state.badge.proposed").wait_for()
    assert page.locator("#stage-status").inner_text() == ""
    form = page.locator("#report-form")
    form.get_by_label("Bilateral").check()
    form.get_by_label("two infected areas").check()
    form.locator('fieldset[data-field="left_zones"]').get_by_label("upper").check()
    form.locator('fieldset[data-field="right_zones"]').get_by_label("lower").check()
    assert page.locator("#report-sentence").inner_text() == SENTENCE
    page.get_by_role("button", name="Propose again with this report").click()
    page.get_by_text("New proposal ready.").wait_for(timeout=120_000)
    case.refresh_from_db()
    assert case.report.text == SENTENCE
    # The proposal made before the report was written stays a click away: new and previous as a toggle.
    compare = page.locator("#proposal-compare-text")
    compare.wait_for()
    assert f"New (v3) from “{SENTENCE}”" in compare.inner_text(), compare.inner_text()
    assert "Previous (v1) made without a report" in compare.inner_text(), compare.inner_text()
    page.get_by_label("Show previous").check()
    assert page.get_by_label("Previous proposal").is_checked() and not page.get_by_label("Model proposal").is_checked()
    shot("04a-previous-proposal")
    page.get_by_label("Show new").check()
    assert page.get_by_label("Model proposal").is_checked()
    wait_for(lambda: _proposals_idle(case), 120, "proposals to settle")
    page.reload()  # the latest proposal is the base of our correction
    page.locator("#case-state.badge.proposed").wait_for()
    head = Case.objects.get(pk=case.pk).head_mask
    assert head.kind == MaskKind.PROPOSAL and head.report_text == SENTENCE
    page.get_by_label("Model proposal").check()
    shot("04-editor-proposal")

    # --- paint a correction (the untrained model may propose anything, so every stroke has a known end state):
    #     brush rows A and B, erase B (undo, redo), erase A, brush A again → A painted, B erased.
    box = page.locator("#canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    row_a = (cx - 60, cy - 40, cx + 60, cy - 40)
    row_b = (cx - 60, cy + 40, cx + 60, cy + 40)
    keep = _image_pixel_at(page, cx, cy - 40)
    gone = _image_pixel_at(page, cx, cy + 40)
    page.keyboard.press("b")
    _stroke(page, *row_a)
    _stroke(page, *row_b)
    page.keyboard.press("e")
    assert page.locator('.tool[data-tool="eraser"]').get_attribute("aria-pressed") == "true"
    _stroke(page, *row_b)
    assert page.locator("#undo").is_enabled()
    page.keyboard.press("Control+z")
    assert page.locator("#redo").is_enabled()
    page.keyboard.press("Control+Shift+z")
    assert not page.locator("#redo").is_enabled()
    _stroke(page, *row_a)
    page.keyboard.press("b")
    _stroke(page, *row_a)
    page.get_by_text("Unsaved changes").wait_for()
    shot("05-corrected")

    # --- a colleague saves first: 409, the drawing stays, then save on top ------------------------------------
    from server.studio.services.masks import mask_save

    theirs = np.zeros((case.height, case.width), np.uint8)
    theirs[:10, :10] = 255
    buf = io.BytesIO()
    Image.fromarray(theirs).save(buf, format="PNG")
    mask_save(case=case, user=ctx["other"], png_bytes=buf.getvalue(), base_version=head.version)
    page.get_by_role("button", name="Save", exact=True).click()
    banner = page.locator("#conflict")
    banner.wait_for()
    assert "Your drawing is still here" in banner.inner_text()
    page.get_by_role("button", name="Show their version").click()
    page.get_by_label("Their saved version").wait_for()
    shot("06-conflict")
    page.get_by_role("button", name="Save mine on top").click()
    page.get_by_text(re.compile(r"Saved as version \d+")).wait_for()
    assert banner.is_hidden()

    # --- accept ----------------------------------------------------------------------------------------
    page.get_by_role("button", name="Accept", exact=True).click()
    page.get_by_text(re.compile(r"Accepted as version \d+")).wait_for()
    page.locator("#case-state.badge.labeled").wait_for()
    case.refresh_from_db()
    assert case.state == CaseState.LABELED and case.head_mask.kind == MaskKind.ACCEPTED
    accepted = _mask_array(case.head_mask)
    assert accepted.shape == (case.height, case.width)
    # The colleague's mask is empty at both rows: what was accepted is our drawing, on top of their version.
    assert accepted[keep[1], keep[0]], "the brush stroke is in the accepted mask"
    assert not accepted[gone[1], gone[0]], "the erased stroke is not"
    saved_on_top = case.head_mask.parent
    assert saved_on_top.author == ctx["admin"] and saved_on_top.parent.author == ctx["other"]
    page.keyboard.press("?")
    page.locator("#help-dialog").wait_for()
    shot("07-accepted-help")
    page.keyboard.press("Escape")

    # --- retrain, watch progress, see the new version ---------------------------------------------------
    page.get_by_role("link", name="Jobs & models").click()
    page.locator('#models-rows tr[data-number="1"]').wait_for()
    page.get_by_text("3 accepted training cases. Ready to train (fine-tunes the active model).").wait_for()
    page.get_by_label("Epochs").fill("2")
    page.get_by_role("button", name="Start retraining").click()
    page.locator("#job").wait_for()
    job = wait_for(lambda: Job.objects.filter(project=project, kind=JobKind.TRAINING).first(), 30, "training job")
    page.locator("#job-status.running").wait_for(timeout=120_000)
    shot("08-training")
    page.locator("#job-status.succeeded").wait_for(timeout=240_000)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert page.locator("#job-progress").get_attribute("aria-valuenow") == "100"
    assert int(page.locator("#job").get_attribute("data-socket-messages")) >= 3, "progress came over the websocket"
    assert page.locator("#chart-loss").get_attribute("data-points") == "2"
    assert page.locator("#chart-dice").get_attribute("data-points") == "2"
    page.locator('#models-rows tr[data-number="2"]').wait_for()
    assert "val dice" in page.locator("#models-head").inner_text().lower()
    shot("09-models")

    # --- promote the new version, then roll back to the first -------------------------------------------
    page.on("dialog", lambda dialog: dialog.accept())
    v2 = ModelVersion.objects.get(project=project, number=2)
    if v2.status != "active":
        page.locator('#models-rows tr[data-number="2"]').get_by_role("button", name="Promote").click()
        page.locator('#models-rows tr[data-number="2"] .badge.active').wait_for()
    page.locator('#models-rows tr[data-number="1"]').get_by_role("button", name="Roll back to this").click()
    page.locator('#models-rows tr[data-number="1"] .badge.active').wait_for()
    statuses = dict(ModelVersion.objects.filter(project=project).values_list("number", "status"))
    assert statuses[1] == "active" and statuses[2] != "active", statuses

    # --- export the dataset ----------------------------------------------------------------------------
    page.get_by_role("link", name="Export").click()
    page.get_by_label("Format").select_option("lvit")
    page.locator("#export-summary dt").first.wait_for()
    shot("10-export")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download dataset").click()
    path = artifacts / "dataset.zip"
    info.value.save_as(str(path))
    names = zipfile.ZipFile(path).namelist()
    assert any(n.endswith("img/2.png") for n in names), names
    assert sum(1 for n in names if "/labelcol/" in n) == 3, names

    # The one failed request the browser may log is the save that answered 409 on purpose.
    unexpected = [e for e in page.console_errors if "409 (Conflict)" not in e]
    assert unexpected == [], unexpected
