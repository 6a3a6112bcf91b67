"""The human-in-the-loop cycle through a real Celery worker process, real Redis and real PostgreSQL.

Models are real LViT-T networks at 32x32 (randomly initialised or trained for one epoch on a few synthetic
cases): honest for the pipeline, tiny for 2 CPU cores.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from server.core.models import Membership, Role
from server.jobs.models import Job, JobStatus
from server.studio.models import (
    Case,
    CaseState,
    JobKind,
    MaskKind,
    MaskVersion,
    ModelStatus,
    ModelVersion,
    Project,
    PseudoLabel,
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
    from server.studio.services.registry import model_version_create

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


def lenient_floor(project: Project, user: Any, min_dice: float = 0.1) -> None:
    """A floor a 1-2 epoch LViT-T at 32x32 can reach (val Dice ~0.2 here), for tests about what follows a promotion;
    the guard itself (default floor 0.3) is tested in test_loop_guard.py."""
    from server.studio.services.training import training_policy_set

    training_policy_set(project=project, user=user, promotion="auto_if_better", min_dice=min_dice)


def start_training(project: Project, user: Any, **params: Any) -> Job:
    from server.studio.services.training import training_job_create

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
    from server.studio.storage import read_uint8_png

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


# --------------------------------------------------------------------------- training


def session_headers(user: Any) -> list[tuple[bytes, bytes]]:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://testserver")]


def held_training(monkeypatch: pytest.MonkeyPatch, project: Project, user: Any, **params: Any) -> Job:
    """A committed training job whose task is not sent yet (so a websocket can subscribe before it starts)."""
    from server.jobs import services as engine

    held: list[Job] = []
    monkeypatch.setattr(engine, "_enqueue_on_commit", lambda job, countdown=None: held.append(job))
    job = start_training(project, user, **params)
    monkeypatch.undo()
    assert held == [job]
    return job


def send(job: Job) -> None:
    """Send the job's task by its name, as the job engine does on commit."""
    from server.celery import app

    app.send_task(job.task_name, args=[job.pk], task_id=job.celery_task_id)


async def watch_job(job: Job, user: Any, headers: list, timeout: float = 180.0) -> list[dict]:
    """Subscribe to ``/ws/jobs/<id>/`` through the real ASGI app, send the task, collect messages until done."""
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from server.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
    connected, _ = await communicator.connect(timeout=15)
    assert connected
    messages = [await communicator.receive_json_from(timeout=10)]
    await sync_to_async(send)(job)
    deadline = time.monotonic() + timeout
    while messages[-1]["job"]["status"] not in ("succeeded", "failed", "cancelled"):
        messages.append(await communicator.receive_json_from(timeout=max(1.0, deadline - time.monotonic())))
    await communicator.disconnect()
    await close_thread_connections()
    return messages


async def close_thread_connections() -> None:
    """The consumer's database calls ran in asgiref's executor thread; close its connection (test DB teardown)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


def test_cold_start_says_how_many_accepted_cases_are_missing(worker, settings) -> None:
    from server.core.errors import ServiceError

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 5
    users = make_users()
    project = labeled_project(users, train=2, val=0, unlabeled=0)
    with pytest.raises(ServiceError) as err:
        start_training(project, users["admin"], epochs=1)
    assert err.value.code == "not_enough_labels"
    assert {k: err.value.detail[k] for k in ("accepted", "needed", "missing")} == {
        "accepted": 2,
        "needed": 5,
        "missing": 3,
    }

    from django.test import Client

    client = Client()
    client.force_login(users["admin"])
    response = client.post(f"/api/projects/{project.pk}/training-jobs/", {"epochs": 1}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "not_enough_labels" and response.json()["detail"]["missing"] == 3
    client.force_login(users["outsider"])
    assert (
        client.post(f"/api/projects/{project.pk}/training-jobs/", {}, content_type="application/json").status_code
        == 404
    )
    client.force_login(users["annotator"])
    assert (
        client.post(f"/api/projects/{project.pk}/training-jobs/", {}, content_type="application/json").status_code
        == 403
    )
    assert not Job.objects.filter(kind=JobKind.TRAINING).exists()


def test_training_round_streams_progress_creates_a_version_and_promotes_it(worker, settings, monkeypatch) -> None:
    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 4
    users = make_users()
    project = labeled_project(users, train=4, val=2, unlabeled=2)
    lenient_floor(project, users["admin"])
    job = held_training(monkeypatch, project, users["admin"], epochs=2, mode="semi_supervised")

    try:
        messages = asyncio.run(watch_job(job, users["annotator"], session_headers(users["annotator"]), timeout=120))
    except Exception:
        job.refresh_from_db()
        raise AssertionError(f"job {job.status} {job.progress} {job.message}\n{worker.log()}") from None
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message + worker.log()
    assert messages[0]["job"]["status"] == "pending"  # the current state on connect, then relays
    relayed = [m["job"]["progress"] for m in messages[1:]]
    epochs = [p for p in relayed if p.get("val_dice") is not None]
    assert epochs and epochs[-1]["epoch"] == 2 and epochs[-1]["epochs"] == 2
    assert {"sup_dice", "sup_bce", "loss"} <= set(epochs[-1]["losses"]) and "eta_s" in epochs[-1]
    assert any("unsup_dice" in (p.get("losses") or {}) for p in relayed)  # the semi-supervised epoch ran
    assert [h["epoch"] for h in job.progress["history"]] == [1, 2]

    mv = ModelVersion.objects.get(training_job=job)
    assert job.result["model_version"] == mv.pk and job.result["promoted"] is True, job.result
    assert mv.status == ModelStatus.ACTIVE and mv.parent is None and mv.metrics["init"] == "scratch"
    assert mv.metrics["n_labeled"] == 4 and mv.metrics["n_val"] == 2 and mv.metrics["n_unlabeled"] == 2
    assert 0.0 <= mv.metrics["val_dice"] <= 1.0 and mv.metrics["val_source"] == "val"
    # the app's training: text-consistent augmentation, the template's text length, the β rule
    from ml.epi import beta_for_updates

    assert mv.config["train"]["augment_mode"] == "consistent" and mv.config["train"]["epi_beta"] is None
    assert mv.config["model"]["arch"] == "lvit_zones" and mv.config["train"]["report_dropout"] == 0.2
    assert mv.config["train"]["pseudo_zone_gate"] is True  # pseudo-labels corrected by their report
    assert mv.config["model"]["text_len"] == 10  # free text: the longest report (9 words), at least the paper's 10
    assert mv.config["epi_beta"] == beta_for_updates(0)  # 2 epochs, 1 prototype: one update, which stores P_0

    # promotion -> re-proposals for the unlabeled cases and an EPI update, with the new model
    follow = wait_for(
        lambda: list(Job.objects.filter(project=project, kind__in=[JobKind.BATCH_PROPOSAL, JobKind.EPI_UPDATE])),
        what="follow-up jobs",
    )
    for f in follow:
        f = wait_job(f.pk, worker)
        assert f.status == JobStatus.SUCCEEDED
        if f.kind == JobKind.EPI_UPDATE:
            assert f.result["beta"] == mv.config["epi_beta"]  # the version's EPI updates keep its round's β
    unlabeled = Case.objects.filter(project=project).exclude(state=CaseState.LABELED)
    for case in unlabeled:
        assert case.head_mask.model_version_id == mv.pk and case.state == CaseState.PROPOSED
        label = PseudoLabel.objects.get(case=case)
        assert label.model_version_id == mv.pk and label.iterations == 1


def test_manual_policy_keeps_a_candidate_then_admin_promotes_and_rolls_back(worker, settings, tmp_path) -> None:
    from django.test import Client

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 4
    users = make_users()
    project = labeled_project(users, train=4, val=2, unlabeled=1)
    first = random_model(project, tmp_path)
    from server.studio.services.jobs import project_job_create

    epi = wait_job(project_job_create(kind=JobKind.EPI_UPDATE, project=project).pk, worker)
    assert epi.status == JobStatus.SUCCEEDED and epi.result["initialised"] == 1
    assert epi.result["beta"] == 0.99  # a version from before the β rule keeps the paper's β
    job = start_training(project, users["admin"], epochs=1, mode="semi_supervised", promotion="manual")
    job = wait_job(job.pk, worker)
    assert job.status == JobStatus.SUCCEEDED, job.message
    # fine-tuning has no prototype epochs; the round continued the stored EPI map (P_0 from the EPI job)
    assert job.progress["pseudo"]["iterations"] == 2
    candidate = ModelVersion.objects.get(training_job=job)
    assert candidate.status == ModelStatus.CANDIDATE and job.result["promoted"] is False
    assert candidate.parent_id == first.pk and candidate.metrics["init"] == "finetune"
    assert candidate.metrics["baseline"]["model_version"] == first.pk  # compared on the same val cases

    client = Client()
    client.force_login(users["admin"])
    assert client.post(f"/api/models/{candidate.pk}/activate/").status_code == 200
    candidate.refresh_from_db()
    first.refresh_from_db()
    assert (candidate.status, first.status) == (ModelStatus.ACTIVE, ModelStatus.RETIRED)
    batch = wait_for(lambda: Job.objects.filter(project=project, kind=JobKind.BATCH_PROPOSAL).first(), what="batch")
    assert wait_job(batch.pk, worker).status == JobStatus.SUCCEEDED
    case = Case.objects.filter(project=project).exclude(state=CaseState.LABELED).get()
    assert case.head_mask.model_version_id == candidate.pk

    assert client.post(f"/api/models/{first.pk}/activate/").status_code == 200  # rollback
    first.refresh_from_db()
    assert first.status == ModelStatus.ACTIVE
    rollback_batch = wait_for(
        lambda: Job.objects.filter(project=project, kind=JobKind.BATCH_PROPOSAL).exclude(pk=batch.pk).first(),
        what="rollback batch",
    )
    assert wait_job(rollback_batch.pk, worker).status == JobStatus.SUCCEEDED
    case.refresh_from_db()
    assert case.head_mask.model_version_id == first.pk


def test_epi_update_clears_what_the_report_does_not_claim(worker, tmp_path) -> None:
    """The EPI job folds report-corrected predictions into the maps (pipeline.PSEUDO_ZONE_GATE): background outside
    the lung zones a structured report claims; a free-text report's prediction passes unchanged."""
    from ml.zones import pseudo_label_gate, zone_prior
    from server.studio import storage
    from server.studio.services.jobs import project_job_create
    from server.workers import pipeline

    users = make_users()
    project = make_project(users)
    random_model(project, tmp_path)
    claimed = "Unilateral pulmonary infection, one infected area, all left lung."
    structured = upload(project, users["admin"], 7, text=claimed)
    free = upload(project, users["admin"], 8)
    epi = wait_job(project_job_create(kind=JobKind.EPI_UPDATE, project=project).pk, worker)
    assert epi.status == JobStatus.SUCCEEDED and epi.result["initialised"] == 2, epi.message
    maps = {c: storage.read_uint8_png(PseudoLabel.objects.get(case=c).soft_map.name) for c in (structured, free)}
    gate = pseudo_label_gate(zone_prior(claimed, pipeline._case_image(structured)))
    assert maps[structured].shape == gate.shape
    assert (gate < 0.01).mean() > 0.3 and (gate > 0.5).mean() > 0.1  # one side of the lungs claimed
    assert maps[structured][gate < 0.01].max() <= 3  # 8-bit map: background where the report claims nothing
    assert maps[structured][gate > 0.5].mean() > 20  # the (untrained) model's prediction kept where it claims
    half = maps[free].shape[1] // 2
    assert maps[free][:, :half].mean() > 20 and maps[free][:, half:].mean() > 20  # free text: nothing cleared


# --------------------------------------------------------------------------- failure, duplicates, cancel


def wait_training_steps(job: Job, worker: Any) -> None:
    wait_for(lambda: Job.objects.get(pk=job.pk).progress.get("losses"), 120, "training steps", worker)


def test_killed_worker_leaves_a_failed_job_and_no_model_version(worker, settings) -> None:
    from server.jobs.services import job_reap_stale

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 2
    users = make_users()
    project = labeled_project(users, train=2, val=1, unlabeled=0)
    job = start_training(project, users["admin"], epochs=500, mode="labeled_only")
    wait_training_steps(job, worker)
    beat = Job.objects.get(pk=job.pk).heartbeat_at
    wait_for(lambda: Job.objects.get(pk=job.pk).heartbeat_at > beat, 10, "a heartbeat", worker)

    worker.kill()  # SIGKILL: no cleanup, no acknowledgement, no final write
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job_reap_stale(stale_after_s=60, job_ids=[job.pk]) == []  # a fresh heartbeat is not stale
    wait_for(lambda: job_reap_stale(stale_after_s=2, job_ids=[job.pk]), 30, "the reaper to see the dead job")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "worker lost" in job.message
    assert not ModelVersion.objects.filter(project=project).exists()

    worker.start()  # a restarted worker (and a late redelivery) leaves the failed job alone
    time.sleep(2)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and not ModelVersion.objects.exists()


def test_job_of_a_lost_worker_is_retried_and_completes(worker, tmp_path) -> None:
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    users = make_users()
    project = make_project(users)
    case = upload(project, users["admin"], seed=3)  # no model yet: no proposal job
    mv = random_model(project, tmp_path)
    long_ago = timezone.now() - timedelta(minutes=10)
    job = Job.objects.create(  # what a worker that died mid-proposal leaves behind
        project=project,
        case=case,
        kind=JobKind.PROPOSAL,
        task_name="gpu.propose_mask",
        status=JobStatus.RUNNING,
        params={"attempt": 1, "max_attempts": 3},
        celery_task_id=str(uuid.uuid4()),
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    # the live worker's reaper (every half stale window) finds it and retries it with a new task id
    wait_for(lambda: Job.objects.get(pk=job.pk).params["attempt"] == 2, 30, "the reaper to retry the job", worker)
    job = wait_job(job.pk, worker)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert MaskVersion.objects.get(case=case, kind=MaskKind.PROPOSAL).model_version_id == mv.pk


def test_two_claims_one_winner_and_duplicate_deliveries_do_nothing(worker, tmp_path, monkeypatch) -> None:
    import threading

    from django.db import connection

    from server.jobs import services as engine
    from server.studio.services.jobs import project_job_create

    users = make_users()
    project = make_project(users)
    case = upload(project, users["admin"], seed=4)
    random_model(project, tmp_path)

    held: list[Job] = []
    monkeypatch.setattr(engine, "_enqueue_on_commit", lambda job, countdown=None: held.append(job))
    racing = project_job_create(kind=JobKind.PROPOSAL, project=project, case=case)
    job = project_job_create(kind=JobKind.PROPOSAL, project=project, case=case)
    monkeypatch.undo()

    barrier, winners = threading.Barrier(2), []

    def claim() -> None:
        barrier.wait()
        winners.append(engine.job_claim(job_id=racing.pk, task_id=racing.celery_task_id))
        connection.close()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w is not None for w in winners) == [False, True]
    Job.objects.filter(pk=racing.pk).update(status=JobStatus.CANCELLED)

    from server.workers.tasks import propose_mask

    propose_mask.apply_async(args=[job.pk], task_id=str(__import__("uuid").uuid4()))  # a stale delivery
    send(job)
    assert wait_job(job.pk, worker).status == JobStatus.SUCCEEDED
    send(job)  # the broker delivers the same message again
    wait_for(lambda: worker.log().count(f"job {job.pk} not claimed") >= 2, 60, "both extra deliveries", worker)
    assert MaskVersion.objects.filter(case=case).count() == 1


def test_cancel_stops_a_running_round_and_a_pending_job_never_runs(worker, settings, monkeypatch) -> None:
    from django.test import Client

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 2
    users = make_users()
    project = labeled_project(users, train=2, val=1, unlabeled=0)
    client = Client()
    client.force_login(users["admin"])

    pending = held_training(monkeypatch, project, users["admin"], epochs=1)
    response = client.post(f"/api/jobs/{pending.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    send(pending)
    wait_for(lambda: f"job {pending.pk} not claimed" in worker.log(), 60, "the cancelled job's delivery", worker)

    job = start_training(project, users["admin"], epochs=500, mode="labeled_only")
    wait_training_steps(job, worker)
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 200
    wait_for(lambda: f"job {job.pk} stopped: cancelled" in worker.log(), 120, "the worker to stop", worker)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and not ModelVersion.objects.filter(project=project).exists()
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 409


def test_bootstrap_model_trains_promotes_and_proposes(worker, settings) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 2
    users = make_users()
    project = labeled_project(users, train=2, val=1, unlabeled=1)
    lenient_floor(project, users["admin"], min_dice=0.01)
    out = StringIO()
    args = {"project": project.pk, "epochs": 1, "img_size": TEST_IMG_SIZE, "batch_size": 2}
    call_command("bootstrap_model", **args, wait=True, timeout=300, stdout=out)
    mv = ModelVersion.objects.get(project=project)
    assert mv.status == ModelStatus.ACTIVE and mv.training_job.kind == JobKind.TRAINING
    assert mv.config["model"]["arch"] == "lvit_zones"  # a first round trains the variant whose masks follow the report
    case = Case.objects.filter(project=project).exclude(state=CaseState.LABELED).get()
    assert case.head_mask.model_version_id == mv.pk, out.getvalue()  # proposed with the zone prior of its report

    again = StringIO()
    call_command("bootstrap_model", **args, stdout=again)
    assert "already has an active model" in again.getvalue()
    assert Job.objects.filter(project=project, kind=JobKind.TRAINING).count() == 1


def test_scoring_and_evaluation_jobs(worker, tmp_path) -> None:
    from server.studio.services.jobs import project_job_create

    users = make_users()
    project = labeled_project(users, train=0, val=2, unlabeled=2)
    mv = random_model(project, tmp_path)
    Case.objects.filter(project=project).update(al_score=None)
    scoring = wait_job(project_job_create(kind=JobKind.SCORING, project=project).pk, worker)
    assert scoring.status == JobStatus.SUCCEEDED and scoring.result["cases"] == 2
    unlabeled = Case.objects.filter(project=project).exclude(state=CaseState.LABELED)
    assert all(0.0 <= c.al_score <= 1.0 for c in unlabeled)
    assert not MaskVersion.objects.filter(case__in=unlabeled).exists()  # scores only, no new masks

    evaluation = wait_job(project_job_create(kind=JobKind.EVALUATION, project=project).pk, worker)
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.message
    assert evaluation.result["model_version"] == mv.pk and evaluation.result["metrics"]["n"] == 2
    assert 0.0 <= evaluation.result["metrics"]["dice"] <= 1.0
