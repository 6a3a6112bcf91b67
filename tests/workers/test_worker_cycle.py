"""The human-in-the-loop cycle through a real Celery worker process, real Redis and real PostgreSQL.

Models are real LViT-T networks at 32x32 (randomly initialised or trained for one epoch on a few synthetic
cases): honest for the pipeline, tiny for 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from server.studio.models import (
    Case,
    CaseState,
    Job,
    JobKind,
    JobStatus,
    MaskKind,
    MaskVersion,
    Membership,
    ModelStatus,
    ModelVersion,
    Project,
    Role,
    Split,
)
from tests.workers.conftest import TEST_IMG_SIZE, png, synthetic_case, wait_for, wait_job

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SENTENCE = "One round lesion in the upper left area."


# --------------------------------------------------------------------------- setup helpers


def make_users() -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    return {
        name: User.objects.create_user(username=name, password="pw-123456789")
        for name in ("admin", "annotator", "outsider")
    }


def make_project(users: dict[str, Any], name: str = "p") -> Project:
    from server.studio.services.projects import project_create

    project = project_create(user=users["admin"], name=name, template="free-text")
    Membership.objects.create(project=project, user=users["annotator"], role=Role.ANNOTATOR)
    return project


def random_model(project: Project, tmp_path: Path, *, seed: int = 0, activate: bool = True) -> ModelVersion:
    """A real, untrained LViT-T (32x32) stored as a version; activated directly (no follow-up jobs)."""
    from ml.config import LViTConfig
    from ml.models import build_model
    from ml.predict import save_checkpoint
    from server.workers.services import model_version_create

    torch.manual_seed(seed)
    cfg = LViTConfig(img_size=TEST_IMG_SIZE)
    path = save_checkpoint(tmp_path / f"random-{seed}.pt", build_model(cfg), cfg)
    mv = model_version_create(
        project=project, checkpoint=path, config={"model": cfg.to_dict()}, metrics={}, parent=None, training_job=None
    )
    if activate:
        ModelVersion.objects.filter(pk=mv.pk).update(status=ModelStatus.ACTIVE)
        mv.refresh_from_db()
    return mv


def upload(project: Project, user: Any, seed: int, *, split: str = Split.TRAIN, text: str = SENTENCE) -> Case:
    from server.studio.services.cases import case_create

    data, _ = synthetic_case(seed)
    return case_create(project=project, user=user, data=data, filename=f"c{seed}.png", split=split, report_text=text)


def accept(case: Case, user: Any, seed: int) -> MaskVersion:
    """An accepted mask (the clinician's), written the way the studio stores them."""
    from django.core.files.base import ContentFile
    from django.db.models import Max

    _, mask = synthetic_case(seed)
    number = (case.masks.aggregate(n=Max("version"))["n"] or 0) + 1
    mv = MaskVersion(case=case, version=number, kind=MaskKind.ACCEPTED, author=user, report_text=case.report.text)
    mv.png.save("m.png", ContentFile(png(np.where(mask, 255, 0).astype(np.uint8))), save=False)
    mv.foreground = int(mask.sum())
    mv.save()
    Case.objects.filter(pk=case.pk).update(state=CaseState.LABELED, head_mask=mv)
    return mv


def labeled_project(users: dict[str, Any], *, train: int, val: int, unlabeled: int) -> Project:
    project = make_project(users)
    seed = 100
    for split, n in ((Split.TRAIN, train), (Split.VAL, val)):
        for _ in range(n):
            case = upload(project, users["admin"], seed, split=split)
            accept(case, users["admin"], seed)
            seed += 1
    for _ in range(unlabeled):
        upload(project, users["admin"], seed)
        seed += 1
    return project


def start_training(project: Project, user: Any, **params: Any) -> Job:
    from server.workers.services import training_job_create

    return training_job_create(
        project=project, params={"img_size": TEST_IMG_SIZE, "batch_size": 2, **params}, actor=user
    )


# --------------------------------------------------------------------------- proposals


def test_upload_and_report_change_each_store_a_proposal(worker, tmp_path) -> None:
    from server.studio.services.cases import report_update

    users = make_users()
    project = make_project(users)
    mv = random_model(project, tmp_path)

    case = upload(project, users["annotator"], seed=1)
    job = wait_for(lambda: Job.objects.filter(case=case, kind=JobKind.PROPOSAL).first(), what="proposal job")
    job = wait_job(job.pk, worker)
    assert job.status == JobStatus.SUCCEEDED, job.message
    first = MaskVersion.objects.get(pk=job.result["mask"])
    assert (first.kind, first.model_version_id, first.report_text) == (MaskKind.PROPOSAL, mv.pk, SENTENCE)
    assert first.report_id == case.report_id
    case.refresh_from_db()
    assert case.head_mask_id == first.pk and case.state == CaseState.PROPOSED
    assert case.al_score == pytest.approx(first.uncertainty) and 0.0 <= first.uncertainty <= 1.0
    from server.workers.services import read_uint8_png

    stored = read_uint8_png(first.png.name)
    assert stored.shape == (case.height, case.width) and set(np.unique(stored)) <= {0, 255}

    new_text = "Two small lesions in the lower right area."
    report_update(case=case, user=users["annotator"], text=new_text)
    second_job = wait_for(
        lambda: Job.objects.filter(case=case, kind=JobKind.PROPOSAL).exclude(pk=job.pk).first(), what="2nd job"
    )
    second_job = wait_job(second_job.pk, worker)
    assert second_job.status == JobStatus.SUCCEEDED, second_job.message
    second = MaskVersion.objects.get(pk=second_job.result["mask"])
    assert second.report_text == new_text and second.version == first.version + 1 and second.parent_id == first.pk
    assert second_job.result["model_loaded"] is False  # the warm worker kept the model loaded
