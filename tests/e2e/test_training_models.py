"""The training form and the models table in real Chromium, with a real training round on the e2e worker.

The project's floor is set out of reach (0.99), so the 1-epoch model stays a candidate: the page shows why, the
version's settings and validation set, best vs last validation Dice, and the hand promotion's confirmation with
its numbers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from server.jobs.models import Job, JobStatus
from server.studio.models import JobKind, ModelStatus, ModelVersion, Split
from tests.workers.test_worker_cycle import accept, make_project, make_users, upload

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _login(page: Any, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def test_training_form_and_models_table(page, web_server, worker, artifacts) -> None:
    from server.studio.services.training import training_policy_set

    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)  # noqa: E731
    users = make_users()
    project = make_project(users)
    seed = 100
    for split, n in ((Split.TRAIN, 8), (Split.VAL, 2)):  # 8: the server's LVIT_MIN_ACCEPTED_FOR_TRAINING
        for _ in range(n):
            accept(upload(project, users["admin"], seed, split=split), users["admin"], seed)
            seed += 1
    training_policy_set(project=project, user=users["admin"], promotion="auto_if_better", min_dice=0.99)

    _login(page, "admin", "pw-123456789")
    page.goto(f"/projects/{project.pk}/jobs/")
    page.get_by_text("8 accepted training cases. Ready to train the first model.").wait_for()
    sizes = page.get_by_label("Image size").locator("option").all_inner_texts()
    assert any(s.startswith("112 px") for s in sizes) and any(s.endswith("(default)") for s in sizes), sizes
    assert page.locator("#train-estimate").inner_text().strip() != ""
    page.get_by_label("Image size").select_option("112")
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Mode", exact=True).select_option("labeled_only")
    shot("01-form")
    page.get_by_role("button", name="Start retraining").click()
    page.locator("#job").wait_for()
    page.locator("#job-status.succeeded").wait_for(timeout=300_000)
    job = Job.objects.get(project=project, kind=JobKind.TRAINING)
    assert job.status == JobStatus.SUCCEEDED and job.params["img_size"] == 112 and job.params["epochs"] == 1
    assert job.params["mode"] == "labeled_only"
    assert page.locator("#job-phase").inner_text() == "Finished."
    dice = page.locator("#job-dice").inner_text()
    assert (
        "Best validation Dice (epoch 1, the checkpoint kept)" in dice
        and "Last epoch's validation Dice (epoch 1)" in dice
    )
    page.get_by_text(re.compile(r"stays a candidate \(not promoted: .*floor 0\.990\)")).wait_for()

    row = page.locator('#models-rows tr[data-number="1"]')
    row.wait_for()
    assert "val dice" in page.locator("#models-head").inner_text().lower()
    assert row.locator("td.settings").inner_text().startswith("112 px · accepted only · from scratch · 1 of 1 epochs")
    assert row.locator("td.validation-set").inner_text() == "v1 · 2 cases (val split)"
    assert "floor 0.990" in row.locator("td.promotion").inner_text()
    shot("02-candidate")

    mv = ModelVersion.objects.get(project=project)
    messages: list[str] = []

    def on_dialog(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    row.get_by_role("button", name="Promote").click()
    row.locator(".badge.active").wait_for()
    [text] = messages
    assert text.startswith("Promote model v1? New proposals will use it.")
    assert f"Validation Dice {mv.metrics['val_dice']:.3f} on validation set v1 · 2 cases (val split)." in text
    assert "An empty mask scores 0.000 on the same cases." in text and "floor 0.990" in text
    page.get_by_text("promoted by hand by admin").wait_for()
    assert ModelVersion.objects.get(pk=mv.pk).status == ModelStatus.ACTIVE
    shot("03-promoted")
    assert page.console_errors == []
