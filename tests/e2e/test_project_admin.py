"""The project page in real Chromium: members and roles, dataset import with progress and per-file errors, and
the audit log.

The import runs as a job on the e2e Celery worker, so its progress arrives as the worker writes it.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from server.core.models import Membership, Role
from server.studio.models import AuditEvent, Case, CaseState

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-42"


def _login(page: Any, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _val_folder(shared_data: Path, *, stems: list[str]) -> dict[str, bytes]:
    """Part of covid_ct's validation split in the LViT layout (images, masks, the text CSV)."""
    root = shared_data / "covid_ct" / "Val_Folder"
    rows = [line for line in (root / "Val_text.csv").read_text().splitlines()[1:] if line.strip()]
    keep = {f"mask_{s}.png" for s in stems}
    text = "Image,Description\n" + "\n".join(r for r in rows if r.split(",", 1)[0] in keep) + "\n"
    files = {"covid/Val_Folder/Val_text.csv": text.encode()}
    for s in stems:
        files[f"covid/Val_Folder/img/{s}.png"] = (root / "img" / f"{s}.png").read_bytes()
        files[f"covid/Val_Folder/labelcol/mask_{s}.png"] = (root / "labelcol" / f"mask_{s}.png").read_bytes()
    return files


@pytest.fixture
def world(seeded_templates: None) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from server.studio.services.projects import project_create

    User = get_user_model()
    admin = User.objects.create_user(username="dr.admin", password=PASSWORD)
    kim = User.objects.create_user(username="dr.kim", password=PASSWORD)
    User.objects.create_user(username="dr.new", password=PASSWORD)
    project = project_create(user=admin, name="Import here", template="lung-infection")
    Membership.objects.create(project=project, user=kim, role=Role.ANNOTATOR)
    return {"admin": admin, "kim": kim, "project": project}


def test_members_roles_and_audit(page, web_server, world, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    project = world["project"]
    _login(page, "dr.admin")
    page.goto(f"/projects/{project.pk}/")
    page.get_by_role("link", name="Project", exact=True).click()
    page.wait_for_url(re.compile(rf"/projects/{project.pk}/admin/$"))
    page.locator('tr[data-user="dr.kim"]').wait_for()

    # --- add a member, change a role, refuse to remove the last admin, remove a member.
    page.get_by_label("Username").fill("dr.new")
    page.get_by_label("Role", exact=True).select_option("reviewer")
    page.get_by_role("button", name="Add member").click()
    page.get_by_text("dr.new added as reviewer.").wait_for()
    assert Membership.objects.get(project=project, user__username="dr.new").role == Role.REVIEWER
    page.get_by_label("Role of dr.kim").select_option("admin")
    page.get_by_text("dr.kim is now admin.").wait_for()
    assert Membership.objects.get(project=project, user=world["kim"]).role == Role.ADMIN
    page.get_by_label("Role of dr.kim").select_option("annotator")
    page.get_by_text("dr.kim is now annotator.").wait_for()
    page.get_by_label("Role of dr.admin").select_option("reviewer")
    page.get_by_text("a project keeps at least one admin").wait_for()
    assert page.get_by_label("Role of dr.admin").input_value() == "admin", "the refused change is undone"
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Remove dr.new").click()
    page.get_by_text("dr.new was removed.").wait_for()
    assert not Membership.objects.filter(project=project, user__username="dr.new").exists()

    # --- the audit log says it in words, newest first, and filters by action.
    page.locator("#audit-rows tr", has_text="dr.admin removed dr.new from the project").wait_for()
    assert "made dr.kim annotator" in page.locator("#audit-rows").inner_text()
    shot("01-members-audit")
    page.get_by_label("Show").select_option("member.removed")
    page.wait_for_function("document.querySelectorAll('#audit-rows tr').length === 1")
    assert AuditEvent.objects.filter(project=project, action="member.removed").count() == 1

    # --- an annotator sees the team and the log, but no editing controls and no import.
    page.context.clear_cookies()
    _login(page, "dr.kim")
    page.goto(f"/projects/{project.pk}/admin/")
    page.locator('tr[data-user="dr.admin"]').wait_for()
    assert page.locator("#member-form").is_hidden()
    assert page.locator("#import-form").is_hidden()
    assert page.get_by_label("Role of dr.admin").count() == 0
    # The one failed request the browser may log is the refused demotion of the last admin (409 on purpose).
    unexpected = [e for e in page.console_errors if "409 (Conflict)" not in e]
    assert unexpected == [], unexpected


def test_import_with_progress_and_per_file_errors(page, web_server, worker, world, shared_data, artifacts) -> None:
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    project = world["project"]
    _login(page, "dr.admin")
    page.goto(f"/projects/{project.pk}/admin/")
    page.locator("#import-form").wait_for()

    # --- a zip with two bad files: nothing is imported, and both are named with what is wrong.
    files = _val_folder(shared_data, stems=["50", "51", "52"])
    files["covid/Val_Folder/img/51.png"] = b"not a png at all"
    files["covid/Val_Folder/labelcol/mask_52.png"] = _zip({"x": b"y"})  # a zip is not a mask
    bad = artifacts / "bad.zip"
    bad.write_bytes(_zip(files))
    page.set_input_files("#import-file", str(bad))
    page.get_by_role("button", name="Import", exact=True).click()
    result = page.locator("#import-result")
    result.get_by_text("Nothing was imported.").wait_for(timeout=120_000)
    rows = result.locator("table.import-errors tbody tr")
    assert rows.count() == 2, result.inner_text()
    text = result.inner_text()
    assert "Val_Folder/img/51.png" in text and "Val_Folder/labelcol/mask_52.png" in text, text
    assert Case.objects.filter(project=project).count() == 0
    shot("01-import-errors")

    # --- the good dataset: progress while the worker checks and stores it, then the summary.
    good = artifacts / "good.zip"
    good.write_bytes(_zip(_val_folder(shared_data, stems=["50", "51", "52", "53", "54"])))
    page.set_input_files("#import-file", str(good))
    page.get_by_role("button", name="Import", exact=True).click()
    page.locator("#import-progress").wait_for()
    page.get_by_text(re.compile(r"Imported 5 cases")).wait_for(timeout=180_000)
    assert page.locator("#import-bar").get_attribute("aria-valuenow") == "100"
    phases = page.locator("#import-progress").get_attribute("data-phases").split("|")
    assert any(p.startswith("Uploading") for p in phases) and any("of # files" in p for p in phases), phases
    assert Case.objects.filter(project=project, state=CaseState.LABELED).count() == 5
    assert "5 with an accepted mask, 5 with a report" in page.locator("#import-result").inner_text()
    page.locator("#audit-rows tr", has_text="imported 5 cases").wait_for()
    shot("02-imported")
    unexpected = [e for e in page.console_errors if "400 (Bad Request)" not in e]
    assert unexpected == [], unexpected
