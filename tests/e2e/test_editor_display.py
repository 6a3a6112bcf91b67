"""The editor's display, zone and proposal screens in real Chromium, no worker needed.

- window/level on a plain chest X-ray PNG: the drag tool and Ctrl+drag, brightness/contrast, invert, presets and
  reset, remembered per user and project (another case of the project opens with it, another user does not);
- the lung-zone grid with the report's zones, live per-zone agreement while drawing;
- keyboard-only report entry (arrow keys choose, Space ticks; the scan does not pan), labels in validation
  messages, accept with Ctrl+Enter;
- the probability map with a threshold slider and "use this threshold"; "the model found no lesion"; the cold-start
  message when the project has no model.

Proposals are stored through the studio's service (as a worker would), with a model version row standing for the
model that made them.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from server.studio.models import Case, CaseState, MaskKind, ModelVersion
from tests.support.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-42"


def _login(page: Any, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def _painted(page: Any) -> None:
    """Wait until the frames already requested have been drawn: the editor repaints on the next animation frame, so
    a pixel read right after a display change may still show the previous frame."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def _canvas_rgb(page: Any, fx: float, fy: float) -> list[int]:
    """The RGB the canvas shows at a fraction (fx, fy) of its size."""
    return page.evaluate(
        """([fx, fy]) => {
            const c = document.getElementById("canvas");
            const d = c.getContext("2d").getImageData(Math.round(c.width * fx), Math.round(c.height * fy), 1, 1).data;
            return [d[0], d[1], d[2]];
        }""",
        [fx, fy],
    )


def _mask(case: Case, box: tuple[int, int, int, int]) -> np.ndarray:
    """A mask of the case's size with the rectangle (x0, y0, x1, y1) set."""
    m = np.zeros((case.height, case.width), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 1
    return m


def _stored(mv: Any) -> np.ndarray:
    with mv.png.open("rb") as fh:
        return np.array(Image.open(io.BytesIO(fh.read())).convert("L")) > 127


@pytest.fixture
def world(seeded_templates: None, shared_data: Path) -> dict[str, Any]:
    """Two clinicians in a lung-infection project with X-ray and CT cases (the CT one with a report)."""
    from django.contrib.auth import get_user_model

    from server.core.models import Membership, Role
    from server.studio.services.cases import case_create_many, case_prepare
    from server.studio.services.projects import project_create

    User = get_user_model()
    lee = User.objects.create_user(username="dr.lee", password=PASSWORD)
    kim = User.objects.create_user(username="dr.kim", password=PASSWORD)
    project = project_create(user=lee, name="Chest review", template="lung-infection")
    Membership.objects.create(project=project, user=kim, role=Role.ANNOTATOR)
    cxr = sorted((shared_data / "covid_cxr" / "Train_Folder" / "img").iterdir())[:2]
    ct = shared_data / "covid_ct" / "Train_Folder" / "img" / "1.png"
    items = [case_prepare(project=project, data=p.read_bytes(), filename=f"xray-{i}.png") for i, p in enumerate(cxr)]
    items.append(
        case_prepare(
            project=project,
            data=ct.read_bytes(),
            filename="ct-1.png",
            report_text="Unilateral pulmonary infection, one infected area, upper left lung.",
        )
    )
    cases = case_create_many(project=project, user=lee, items=items, notify=False)
    return {"lee": lee, "kim": kim, "project": project, "xray": cases[:2], "ct": cases[2]}


def _open(page: Any, case: Case) -> None:
    page.goto(f"/projects/{case.project_id}/cases/{case.pk}/")
    page.locator("#case-state.badge").wait_for()
    page.wait_for_function("document.getElementById('stage-status').textContent === ''")


def test_window_level_on_an_xray_png_is_remembered(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    a, b = world["xray"]
    _login(page, "dr.lee")
    _open(page, a)
    page.keyboard.press("v")  # masks off while sampling the scan
    centre = (0.5, 0.45)
    _painted(page)
    before = _canvas_rgb(page, *centre)[0]

    # --- the window tool: dragging left narrows the window (more contrast), up brightens.
    page.keyboard.press("w")
    assert page.locator('.tool[data-tool="window"]').get_attribute("aria-pressed") == "true"
    box = page.locator("#canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 150, y - 60, steps=6)
    page.mouse.up()
    page.locator("#display-menu summary").click()
    width = float(page.get_by_label("Window width").input_value())
    level = float(page.get_by_label("Window level").input_value())
    assert width < 255 and level < 127.5, (width, level)
    assert page.get_by_label("Preset").input_value() == ""  # custom
    shot("01-window-drag")

    # --- Ctrl + drag with the brush: window changes, nothing is painted.
    page.keyboard.press("b")
    page.keyboard.down("Control")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 100, y, steps=4)
    page.mouse.up()
    page.keyboard.up("Control")
    assert float(page.get_by_label("Window width").input_value()) > width
    assert page.locator("#undo").is_disabled(), "Ctrl+drag did not paint"

    # --- presets, brightness/contrast, invert, reset.
    page.get_by_label("Preset").select_option("dark")
    assert page.get_by_label("Window width").input_value() == "127"
    _painted(page)  # the preset's repaint, before its pixel is the reference for the inverted one
    dark = _canvas_rgb(page, *centre)[0]
    page.get_by_label("Invert (I)").check()
    # the canvas repaints on the next animation frame: wait for it before reading the inverted pixel
    wait_for(lambda: abs((255 - dark) - _canvas_rgb(page, *centre)[0]) <= 2, 10, "the inverted scan to be drawn")
    inverted = _canvas_rgb(page, *centre)[0]
    assert abs((255 - dark) - inverted) <= 2, (dark, inverted)
    page.get_by_label("Brightness").fill("60")
    assert float(page.get_by_label("Window level").input_value()) < 63.5
    shot("02-display-menu")
    page.get_by_role("button", name="Reset display").click()
    assert page.get_by_label("Window width").input_value() == "255"
    assert not page.get_by_label("Invert (I)").is_checked()
    _painted(page)
    assert abs(_canvas_rgb(page, *centre)[0] - before) <= 1, "reset shows the scan as uploaded"

    # --- choose a display, then open another case of the project: it opens with that display.
    page.get_by_label("Preset").select_option("bright")
    page.get_by_label("Invert (I)").check()
    _open(page, b)
    page.locator("#display-menu summary").click()
    assert page.get_by_label("Preset").input_value() == "bright"
    assert page.get_by_label("Invert (I)").is_checked()
    shot("03-remembered")
    # ... kept on the server too, so another browser of the same user gets it.
    from server.core.models import Membership

    def saved() -> dict:
        return Membership.objects.get(user=world["lee"], project=world["project"]).preferences

    wait_for(lambda: saved().get("display", {}).get("grey", {}).get("preset") == "bright", 20, "preferences saved")
    assert saved()["display"]["grey"]["invert"] is True
    assert page.console_errors == [], page.console_errors

    # --- another user of the same browser starts from the scan's own window.
    page.context.clear_cookies()
    _login(page, "dr.kim")
    _open(page, b)
    page.locator("#display-menu summary").click()
    assert page.get_by_label("Window width").input_value() == "255"
    assert not page.get_by_label("Invert (I)").is_checked()


def test_zone_grid_follows_report_and_drawing(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    from server.studio.services.masks import mask_create_proposal

    ct = world["ct"]
    top, bottom, left, right = ct.meta["body_box"]
    # The report says "upper left lung": the patient's left is the image's RIGHT half. Propose the upper
    # third of the image's LEFT half (the patient's right) to get a disagreement in two zones.
    mid = left + (right - left) // 2
    third = (bottom - top) // 3
    wrong = _mask(ct, (left + 4, top + 4, mid - 4, top + third - 4))
    mv_model = ModelVersion.objects.create(project=world["project"], number=1, checkpoint="none.pt", status="retired")
    mask_create_proposal(case=ct, model_version=mv_model, array=wrong)
    _login(page, "dr.lee")
    # The worklist's disagreement column names the zones, ordered by disagreement.
    page.goto(f"/projects/{ct.project_id}/")
    page.get_by_label("Order by").select_option("inconsistency")
    row = page.locator(f'tr[data-case="{ct.pk}"]')
    row.locator("td.disagreement").wait_for()
    assert "R upper: mask only" in row.inner_text() and "L upper: report only" in row.inner_text(), row.inner_text()
    page.wait_for_function("(id) => document.querySelector('tr[data-case]')?.dataset.case === id", arg=str(ct.pk))
    thumb = row.locator("td.thumb img")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    assert thumb.evaluate("(img) => Math.max(img.naturalWidth, img.naturalHeight)") == 64, "a server-made thumbnail"
    page.screenshot(path=str(artifacts / "00-worklist-zones.png"))
    _open(page, ct)
    table = page.locator("#zone-table")
    table.wait_for()
    page.get_by_text("Disagree: right upper: mask only; left upper: report only").wait_for()
    assert page.locator('#zone-table td[data-zone="right upper"].disagree').count() == 1
    assert page.locator('#zone-table td[data-zone="left lower"].agree').count() == 1
    page.get_by_label("Zones").check()
    shot("01-zones-disagree")

    # --- live: erase everything, paint the patient's left upper zone; the table agrees without saving.
    page.locator("#canvas").focus()
    page.keyboard.press("b")
    for _ in range(12):
        page.keyboard.press("]")
    view = page.evaluate("""() => { const r = document.getElementById("canvas").getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height}; }""")

    def screen(ix: float, iy: float) -> tuple[float, float]:
        scale = min((view["w"] - 24) / ct.width, (view["h"] - 24) / ct.height)
        ox = view["x"] + (view["w"] - ct.width * scale) / 2
        oy = view["y"] + (view["h"] - ct.height * scale) / 2
        return ox + ix * scale, oy + iy * scale

    page.keyboard.press("e")
    for iy in range(top + 4, top + third - 3, 8):
        page.mouse.move(*screen(left + 2, iy))
        page.mouse.down()
        page.mouse.move(*screen(mid - 2, iy), steps=8)
        page.mouse.up()
    page.keyboard.press("b")
    ly = top + third // 2
    page.mouse.move(*screen(mid + 30, ly))  # the brush (radius 26) stays right of the midline
    page.mouse.down()
    page.mouse.move(*screen(right - 30, ly), steps=10)
    page.mouse.up()
    page.get_by_text("Report and mask agree in every zone.").wait_for()
    shot("02-zones-agree-live")
    assert page.locator("#zone-table td.disagree").count() == 0
    page.keyboard.press("Control+s")
    page.get_by_text(re.compile(r"Saved as version \d+")).wait_for()
    ct.refresh_from_db()
    assert ct.inconsistency == 0.0, "the server scores the saved mask as the browser did"
    assert page.console_errors == [], page.console_errors


def test_keyboard_only_report_and_accept(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    case = world["xray"][0]
    _login(page, "dr.lee")
    _open(page, case)
    zoom = page.locator("#zoom-value").inner_text()
    box = page.locator("#canvas").bounding_box()
    probe = (box["x"] + 0.3 * box["width"], box["y"] + 0.4 * box["height"])
    page.mouse.move(*probe)
    under = page.locator("#cursor-pos").inner_text()  # the image pixel under a fixed screen point

    # Tab from the first field of the form; every choice is made with arrow keys and Space.
    page.locator('#report-form input[name="laterality"]').first.focus()
    page.keyboard.press("ArrowRight")  # No → Unilateral
    page.keyboard.press("ArrowRight")  # Unilateral → Bilateral
    assert page.get_by_label("Bilateral").is_checked()
    # Saving an incomplete report names what is missing by its label; nothing turns into a lasting red banner.
    page.get_by_role("button", name="Save report").click()
    page.get_by_text("Infected areas: required for this kind of report").first.wait_for()
    assert page.locator("#error").is_hidden()
    page.locator('#report-form input[name="laterality"][value="bilateral"]').focus()
    page.keyboard.press("Tab")  # → areas
    page.keyboard.press("ArrowRight")  # one → two (the first arrow press selects the next choice)
    # Validation names the visible labels while the form is incomplete.
    page.get_by_text("Left lung: required for this kind of report").first.wait_for()
    page.keyboard.press("Tab")  # → left lung "upper"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # left middle
    page.keyboard.press("Tab")  # left lower
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # left "all"
    page.keyboard.press("Tab")  # right lung "upper"
    page.keyboard.press("Space")
    sentence = page.locator("#report-sentence").inner_text()
    assert (
        sentence == "Bilateral pulmonary infection, two infected areas, upper lower left lung and upper right lung."
    ), sentence
    assert page.locator("#report-error li").count() == 0
    assert page.locator("#zoom-value").inner_text() == zoom, "arrow keys in the form did not zoom or pan"
    focused = page.evaluate("() => document.activeElement.closest('fieldset')?.dataset.field")
    assert focused == "right_zones"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused control shows a visible focus ring"
    shot("01-keyboard-report")
    page.get_by_role("button", name="Save report").click()
    page.get_by_text("Report saved.").wait_for()
    assert page.locator("#error").is_hidden() and page.locator("#report-error li").count() == 0
    page.locator('#report-form input[name="right_zones"][value="upper"]').focus()
    page.keyboard.press("Control+Enter")
    page.get_by_text(re.compile(r"Accepted as version \d+")).wait_for()
    case.refresh_from_db()
    assert case.state == CaseState.LABELED
    assert case.report.text == sentence
    page.mouse.move(probe[0] + 1, probe[1])
    page.mouse.move(*probe)
    assert page.locator("#cursor-pos").inner_text() == under, "the keys in the form did not pan the scan"
    assert page.console_errors == [], page.console_errors


def test_probability_threshold_and_empty_proposal(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    from server.studio.services.masks import mask_create_proposal

    a, b = world["xray"]
    model = ModelVersion.objects.create(project=world["project"], number=4, checkpoint="none.pt", status="retired")
    # A probability ramp: left to right 0..1, so every threshold keeps a known share of the columns.
    ramp = np.tile(np.linspace(0.0, 1.0, a.width, dtype=np.float32), (a.height, 1))
    mask_create_proposal(case=a, model_version=model, array=ramp >= 0.5, probabilities=ramp)
    mask_create_proposal(
        case=b,
        model_version=model,
        array=np.zeros((b.height, b.width), bool),
        probabilities=np.full((b.height, b.width), 0.2, np.float32),
    )
    _login(page, "dr.lee")
    _open(page, a)
    assert page.locator("#proposal-model").inner_text() == "model v4"
    page.locator("#probability").wait_for()
    page.get_by_label("Probability map").check()
    slider = page.locator("#threshold")
    slider.fill("0.8")
    area = page.locator("#threshold-area").inner_text()
    expected = int((np.rint(ramp * 255) >= 204).sum())  # ceil(0.8 * 255) = 204
    assert area.startswith(f"{expected} pixels"), (area, expected)
    page.get_by_label("Proposal at threshold").wait_for()
    shot("01-threshold")
    page.get_by_role("button", name="Use this threshold").click()
    page.keyboard.press("Control+s")
    page.get_by_text(re.compile(r"Saved as version \d+")).wait_for()
    saved = _stored(Case.objects.get(pk=a.pk).head_mask)
    assert int(saved.sum()) == expected
    assert Case.objects.get(pk=a.pk).head_mask.kind == MaskKind.CORRECTION

    _open(page, b)
    page.get_by_text("The model found no lesion in this scan.").wait_for()
    assert "highest lesion probability anywhere is 0.20" in page.locator("#proposal-empty").inner_text()
    shot("02-no-lesion")
    assert page.console_errors == [], page.console_errors


def test_cold_start_message_instead_of_a_failing_button(page, web_server, world, artifacts) -> None:
    _login(page, "dr.kim")
    _open(page, world["xray"][0])
    banner = page.locator("#cold-start")
    banner.wait_for()
    text = banner.inner_text()
    assert "No model yet." in text and "more training case" in text, text
    assert page.get_by_role("button", name="Propose again with this report").is_disabled()
    page.screenshot(path=str(artifacts / "01-cold-start.png"))
    assert page.console_errors == [], page.console_errors
