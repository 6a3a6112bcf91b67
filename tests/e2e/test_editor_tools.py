"""Editor tools in real Chromium on a DICOM CT slice: HU window presets, polygon fill, flood fill, zoom, outline.

No worker is needed (the project has no model, so nothing is proposed); the drawing is checked in the mask the
server stores.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image

from server.studio.models import Case, MaskKind, Project
from tests.e2e.dicom import ct_dicom

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-42"


@pytest.fixture
def ct_user(seeded_templates: None) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="dr.ct", password=PASSWORD)


def _pixel(page: Any, x: float, y: float) -> tuple[int, int]:
    page.mouse.move(x, y)
    m = re.fullmatch(r"x (\d+)\s+y (\d+)", page.locator("#cursor-pos").inner_text().strip())
    assert m
    return int(m.group(1)), int(m.group(2))


def _canvas_grey(page: Any, x: float, y: float) -> int:
    """The red channel the canvas shows at a client position (overlays hidden by the caller)."""
    return page.evaluate(
        """([x, y]) => {
            const c = document.getElementById("canvas");
            const r = c.getBoundingClientRect();
            const k = c.width / r.width;
            return c.getContext("2d").getImageData(Math.round((x - r.left) * k), Math.round((y - r.top) * k), 1, 1).data[0];
        }""",
        [x, y],
    )


def test_dicom_window_polygon_fill_zoom(page, web_server, ct_user, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    page.goto("/login/")
    page.get_by_label("Username").fill("dr.ct")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # --- a new project from the projects page, with the esophageal tumour report template.
    page.get_by_text("You are not a member of any project yet").wait_for()
    page.get_by_label("Name").fill("Esophagus CT")
    page.get_by_label("Report template").select_option("esophageal-tumour")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(re.compile(r"/projects/\d+/$"))
    project = Project.objects.get(name="Esophagus CT")
    assert project.template.slug == "esophageal-tumour"
    assert project.memberships.get(user=ct_user).role == "admin"
    page.set_input_files(
        "#upload-files", files=[{"name": "slice.dcm", "mimeType": "application/dicom", "buffer": ct_dicom()}]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Uploaded 1 case.").wait_for()
    case = Case.objects.get(project=project)
    assert case.original_format == "dicom"
    page.locator(f'tr[data-case="{case.pk}"]').get_by_role("link", name="slice.png").click()

    # --- CT window/level: the lung preset brightens the lungs (-750 HU) that the soft-tissue window shows black.
    page.locator("#display-menu summary").click()
    preset = page.get_by_label("Preset")
    preset.locator('option[value="lung"]').wait_for(state="attached")  # the HU values have arrived
    page.locator("#display-menu summary").click()
    box = page.locator("#canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.keyboard.press("v")  # hide the (empty) masks while sampling the scan
    lung_x = cx - 0.18 * min(box["width"], box["height"])
    before = _canvas_grey(page, lung_x, cy)
    page.locator("#display-menu summary").click()
    preset.select_option("lung")
    page.locator("#display-menu summary").click()
    page.wait_for_timeout(200)
    after = _canvas_grey(page, lung_x, cy)
    assert before < 20 < after, (before, after)
    page.keyboard.press("v")
    shot("01-dicom-lung-window")

    # --- polygon: four clicks and a click on the first vertex fill a square.
    page.keyboard.press("p")
    d = 0.15 * min(box["width"], box["height"])
    corners = [(cx - d, cy - d), (cx + d, cy - d), (cx + d, cy + d), (cx - d, cy + d)]
    for x, y in corners:
        page.mouse.click(x, y)
    page.mouse.click(*corners[0])
    (x0, y0), (x1, y1) = _pixel(page, *corners[0]), _pixel(page, *corners[2])
    area = (x1 - x0) * (y1 - y0)
    # --- flood fill: shift-click clears the square, undo brings it back.
    page.keyboard.press("f")
    page.keyboard.down("Shift")
    page.mouse.click(cx, cy)
    page.keyboard.up("Shift")
    page.keyboard.press("Control+z")
    # --- zoom in and back to fit, outline overlay.
    zoom = page.locator("#zoom-value")
    fitted = zoom.inner_text()
    page.keyboard.press("+")
    assert zoom.inner_text() != fitted
    page.keyboard.press("0")
    assert zoom.inner_text() == fitted
    page.keyboard.press("o")
    assert page.get_by_label("Outline only").is_checked()
    shot("02-polygon-outline")

    page.keyboard.press("Control+s")
    page.get_by_text(re.compile(r"Saved as version 1")).wait_for()
    mv = Case.objects.get(pk=case.pk).head_mask
    assert mv.kind == MaskKind.CORRECTION
    with mv.png.open("rb") as fh:
        mask = np.array(Image.open(io.BytesIO(fh.read())).convert("L")) > 127
    assert abs(int(mask.sum()) - area) <= 0.1 * area, (int(mask.sum()), area)
    assert mask[(y0 + y1) // 2, (x0 + x1) // 2] and not mask[0, 0]

    # --- a saved correction is not a proposal: Reject does not apply. "Next case" claims the only open case.
    assert page.get_by_role("button", name="Reject proposal").is_disabled()
    page.keyboard.press("n")
    page.wait_for_function("document.getElementById('case-meta').textContent.includes('held by dr.ct')")
    assert Case.objects.get(pk=case.pk).assignee.username == "dr.ct"
    page.get_by_role("link", name="Worklist").click()
    page.locator(f'tr[data-case="{case.pk}"] .holder', has_text="you").wait_for()
    shot("03-worklist-held")
    assert page.console_errors == [], page.console_errors
