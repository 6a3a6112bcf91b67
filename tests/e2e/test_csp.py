"""The pages under their enforced Content-Security-Policy in Chromium (issue 13 item 9): each page loads, runs its
ES modules, opens its websocket and draws, with no policy violation in the console."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.dicom import ct_dicom

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-42"


@pytest.fixture
def world(seeded_templates: None) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from server.studio.services.cases import case_create_many, case_prepare
    from server.studio.services.projects import project_create

    owner = get_user_model().objects.create_user(username="dr.csp", password=PASSWORD, is_staff=True)
    project = project_create(user=owner, name="Policy", template="lung-infection")
    items = [case_prepare(project=project, data=ct_dicom(32), filename="slice.dcm")]
    (case,) = case_create_many(project=project, user=owner, items=items, notify=False)
    return {"owner": owner, "project": project, "case": case}


def test_every_page_runs_under_the_enforced_policy(browser, web_server, world, artifacts) -> None:
    context = browser.new_context(base_url=web_server.url)  # no bypass: the policy as a user's browser gets it
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    where = ["/login/"]
    page.on("console", lambda m: m.type == "error" and errors.append(f"{where[-1]}: {m.text} @ {m.location}"))
    page.on("pageerror", lambda e: errors.append(f"{where[-1]}: {e}"))
    try:
        response = page.goto("/login/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.get_by_label("Username").fill("dr.csp")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/$"))
        project, case = world["project"].pk, world["case"].pk
        for path, ready in (
            ("/", "main"),
            (f"/projects/{project}/", "main"),
            (f"/projects/{project}/cases/{case}/", "#case-state.badge"),
            (f"/projects/{project}/jobs/", "main"),
            ("/api/docs/", "#swagger-ui"),
            ("/admin/", "#content"),
        ):
            where.append(path)
            page.goto(path)
            page.locator(ready).first.wait_for()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(artifacts / f"{path.strip('/').replace('/', '_') or 'root'}.png"))
    finally:
        context.close()
    violations = [e for e in errors if "Content Security Policy" in e or "Refused to" in e]
    assert violations == [], violations
