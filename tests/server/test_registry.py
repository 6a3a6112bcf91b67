"""Model registry (one active model per project, enforced by the database) and job claiming."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from server.jobs.models import Job, JobStatus
from server.jobs.progress import job_progress
from server.jobs.services import job_claim, job_finish, job_reap_stale
from server.studio import conf
from server.studio.models import AuditEvent, JobKind, ModelStatus, ModelVersion
from server.studio.services.cases import case_create
from server.studio.services.jobs import project_job_create
from server.studio.services.masks import mask_accept
from server.studio.services.registry import model_version_activate, model_version_create
from tests.server.conftest import gray_image, mask_png


def test_versions_are_numbered_and_activation_retires_the_previous(people, owner_client):
    v1 = model_version_create(project=people.project, checkpoint=b"one", metrics={"val": {"dice": 0.5}})
    v2 = model_version_create(project=people.project, checkpoint=b"two", parent=v1, metrics={"val": {"dice": 0.6}})
    assert (v1.number, v2.number) == (1, 2)
    with v2.checkpoint.open("rb") as fh:
        assert fh.read() == b"two"
    model_version_activate(model_version=v1)
    r = owner_client.post(f"/api/models/{v2.pk}/activate/")
    assert r.status_code == 200 and r.json()["status"] == "active"
    v1.refresh_from_db()
    assert v1.status == ModelStatus.RETIRED
    rollback = owner_client.post(f"/api/models/{v1.pk}/activate/")
    assert rollback.json()["status"] == "active"
    assert ModelVersion.objects.filter(project=people.project, status=ModelStatus.ACTIVE).count() == 1
    models = owner_client.get(f"/api/projects/{people.project.pk}/models/").json()
    assert [(m["number"], m["status"], m["parent"]) for m in models] == [(1, "active", None), (2, "retired", 1)]
    assert AuditEvent.objects.filter(action="model.activated").count() == 3


def test_the_database_refuses_two_active_models(people):
    v1 = model_version_create(project=people.project, checkpoint=b"one")
    v2 = model_version_create(project=people.project, checkpoint=b"two")
    ModelVersion.objects.filter(pk=v1.pk).update(status=ModelStatus.ACTIVE)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(status=ModelStatus.ACTIVE)


def test_metrics_json_and_csv(people, owner_client):
    v1 = model_version_create(project=people.project, checkpoint=b"1", metrics={"val": {"dice": 0.5, "iou": 0.4}})
    model_version_create(
        project=people.project, checkpoint=b"2", parent=v1, metrics={"val": {"dice": 0.7}, "epochs": 3}
    )
    body = owner_client.get(f"/api/projects/{people.project.pk}/metrics/?format=json").json()
    assert [m["metrics"] for m in body["models"]] == [
        {"val": {"dice": 0.5, "iou": 0.4}},
        {"val": {"dice": 0.7}, "epochs": 3},
    ]
    csv_text = owner_client.get(f"/api/projects/{people.project.pk}/metrics/?format=csv").content.decode()
    lines = csv_text.strip().splitlines()
    settings = "epochs,epochs_run,img_size,init,mode,seed,text_len,validation_set_version"
    head = "model_version,id,name,status,parent,created_at,promoted,promotion_reason,"
    assert lines[0] == head + ",".join(f"settings.{k}" for k in settings.split(",")) + ",epochs,val.dice,val.iou"
    assert lines[1].endswith(",,0.5,0.4") and lines[2].endswith(",3,0.7,")
    assert owner_client.get(f"/api/projects/{people.project.pk}/metrics/?format=xml").status_code == 400


def test_job_claim_is_exclusive_and_progress_finish(people, owner_client):
    job = project_job_create(kind=JobKind.BATCH_PROPOSAL, project=people.project, params={"n": 3})
    claimed = job_claim(job_id=job.pk, task_id=job.celery_task_id)
    assert claimed is not None
    assert job_claim(job_id=job.pk, task_id=job.celery_task_id) is None  # duplicate delivery
    assert job_claim(job_id=job.pk, task_id="stale-attempt") is None  # a delivery of another attempt
    assert job_progress(claimed, done=1, total=3) is True
    body = owner_client.get(f"/api/jobs/{job.pk}/").json()
    assert body["status"] == "running" and body["progress"] == {"done": 1, "total": 3} and body["heartbeat_at"]
    assert job_finish(job=claimed, status=JobStatus.SUCCEEDED, result={"proposals": 3}) is True
    assert job_finish(job=claimed, status=JobStatus.FAILED) is False
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.result == {"proposals": 3} and job.finished_at
    assert owner_client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 409


def test_training_needs_admin_and_enough_labels(people, owner_client, settings):
    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 2
    url = f"/api/projects/{people.project.pk}/jobs/"
    start = f"/api/projects/{people.project.pk}/training-jobs/"  # the one way to start training
    assert owner_client.post(url, {"kind": "training"}, format="json").status_code == 405  # /jobs/ only lists
    r = owner_client.post(start, {}, format="json")
    assert r.status_code == 400 and r.json()["error"] == "not_enough_labels"
    for i in range(2):
        c = case_create(project=people.project, user=people.owner, data=gray_image(seed=i), filename=f"t{i}.png")
        mask_accept(case=c, user=people.owner, png_bytes=mask_png(), without_report=True)
    r = owner_client.post(start, {"epochs": 2}, format="json")
    expected = {"attempt": 1, "max_attempts": 1, **conf.default_training_params(), "epochs": 2}
    assert r.status_code == 201 and r.json()["kind"] == "training" and r.json()["params"] == expected
    again = owner_client.post(start, {}, format="json")
    assert again.status_code == 409 and again.json()["error"] == "training_running"
    cancel = owner_client.post(f"/api/jobs/{r.json()['id']}/cancel/")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert owner_client.get(url, {"kind": "training"}).json()["count"] == 1
    assert Job.objects.get(pk=r.json()["id"]).created_by == people.owner


def test_checkpoint_from_a_file_is_streamed_to_storage(people, tmp_path):
    import hashlib

    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"x" * 100_000)
    mv = model_version_create(project=people.project, checkpoint=path, config={"arch": "lvit"})
    with mv.checkpoint.open("rb") as fh:
        assert fh.read() == b"x" * 100_000
    digest = hashlib.sha256(b"x" * 100_000).hexdigest()
    assert mv.checkpoint.name.endswith(".pt")
    assert mv.config == {"arch": "lvit", "checkpoint_sha256": digest, "checkpoint_bytes": 100_000}


def test_empty_checkpoint_and_foreign_parent_are_refused(people):
    from server.core.errors import ServiceError
    from server.studio.services.projects import project_create

    with pytest.raises(ServiceError, match="empty"):
        model_version_create(project=people.project, checkpoint=b"")
    other = project_create(user=people.owner, name="Other", template="lung-infection")
    foreign = model_version_create(project=other, checkpoint=b"w")
    with pytest.raises(ServiceError, match="another project"):
        model_version_create(project=people.project, checkpoint=b"w", parent=foreign)


def test_jobs_without_heartbeat_are_reaped(people):
    from datetime import timedelta

    from django.utils import timezone

    # One attempt each: a reaped job with attempts left is retried (tests/workers), this one is failed.
    alive = project_job_create(kind=JobKind.EPI_UPDATE, project=people.project, params={"max_attempts": 1})
    dead = project_job_create(kind=JobKind.EPI_UPDATE, project=people.project, params={"max_attempts": 1})
    for job in (alive, dead):
        job_claim(job_id=job.pk)
    Job.objects.filter(pk=dead.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert job_reap_stale(stale_after_s=int(timedelta(minutes=10).total_seconds())) == [dead.pk]
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == JobStatus.FAILED and "heartbeat" in dead.message
    assert alive.status == JobStatus.RUNNING
