"""Guarded promotion and the fixed validation set through a real Celery worker process, real Redis and PostgreSQL.

Real LViT-T networks at 32x32 trained for 1-2 epochs on synthetic discs (tiny for 2 CPU cores): a 1-epoch model
does not reach a floor of 0.99, a 2-epoch one reaches 0.1 (val Dice ~0.2).
"""

from __future__ import annotations

import pytest
from django.test import Client

from server.jobs.models import Job, JobStatus
from server.studio.models import Case, JobKind, ModelStatus, ModelVersion, Split, ValidationSet
from tests.workers.conftest import wait_for, wait_job
from tests.workers.test_worker_cycle import accept, labeled_project, make_users, start_training, upload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_bad_candidate_stays_a_candidate_with_its_reason_and_a_good_one_is_promoted(worker, settings) -> None:
    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 4
    users = make_users()
    project = labeled_project(users, train=4, val=2, unlabeled=2)
    client = admin_client(users["admin"])
    policy_url = f"/api/projects/{project.pk}/training-policy/"
    assert client.put(policy_url, {"promotion": "auto_if_better", "min_dice": 0.99}, content_type="application/json")

    bad = wait_job(start_training(project, users["admin"], epochs=1, mode="labeled_only").pk, worker)
    assert bad.status == JobStatus.SUCCEEDED, bad.message + worker.log()
    assert bad.result["promoted"] is False and "floor 0.990" in bad.result["reason"], bad.result
    candidate = ModelVersion.objects.get(training_job=bad)
    assert candidate.status == ModelStatus.CANDIDATE
    listed = client.get(f"/api/projects/{project.pk}/models/").json()[0]
    assert listed["promotion"]["reason"] == bad.result["reason"]
    assert listed["promotion"]["checks"]["floor"] == {
        "passed": False,
        "value": round(candidate.metrics["val_dice"], 4),
        "threshold": 0.99,
        "text": f"validation Dice {candidate.metrics['val_dice']:.3f} (floor 0.990)",
    }
    assert listed["settings"] == {
        "img_size": 32,
        "mode": "labeled_only",
        "init": "scratch",
        "epochs": 1,
        "epochs_run": 1,
        "text_len": candidate.config["model"]["text_len"],
        "seed": 0,
        "validation_set_version": 1,
    }
    # nothing is served: no active model, no re-proposal jobs
    assert not ModelVersion.objects.filter(project=project, status=ModelStatus.ACTIVE).exists()
    assert not Job.objects.filter(project=project, kind=JobKind.BATCH_PROPOSAL).exists()

    assert client.put(policy_url, {"promotion": "auto_if_better", "min_dice": 0.1}, content_type="application/json")
    good = wait_job(start_training(project, users["admin"], epochs=2, mode="semi_supervised").pk, worker)
    assert good.status == JobStatus.SUCCEEDED, good.message + worker.log()
    promoted = ModelVersion.objects.get(training_job=good)
    assert good.result["promoted"] is True, good.result
    assert good.result["reason"].startswith("promoted: first model: validation Dice")
    assert promoted.status == ModelStatus.ACTIVE and promoted.promotion["checks"]["lesions"]["passed"]
    assert promoted.metrics["n_val_empty_on_lesion"] <= promoted.metrics["n_val_lesion"] // 2
    # both versions were scored on the same frozen validation cases
    assert promoted.validation_set_id == candidate.validation_set_id
    assert promoted.metrics["validation_set"] == candidate.metrics["validation_set"]
    batch = wait_for(lambda: Job.objects.filter(project=project, kind=JobKind.BATCH_PROPOSAL).first(), what="batch")
    assert wait_job(batch.pk, worker).status == JobStatus.SUCCEEDED


def test_validation_set_is_fixed_across_rounds_and_versioned_when_val_cases_are_added(worker, settings) -> None:
    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 4
    users = make_users()
    project = labeled_project(users, train=6, val=0, unlabeled=0)
    test_case = upload(project, users["admin"], 900, split=Split.TEST)
    accept(test_case, users["admin"], 900)
    client = admin_client(users["admin"])
    client.put(
        f"/api/projects/{project.pk}/training-policy/",
        {"promotion": "auto_if_better", "min_dice": 0.0},
        content_type="application/json",
    )

    first = wait_job(start_training(project, users["admin"], epochs=1, mode="labeled_only", seed=3).pk, worker)
    assert first.status == JobStatus.SUCCEEDED, first.message + worker.log()
    v1 = ModelVersion.objects.get(training_job=first)
    vs1 = ValidationSet.objects.get(project=project)
    assert vs1.source == "seeded" and vs1.seed == 3 and len(vs1.case_ids) == 1  # 6 // 5, recorded
    assert v1.metrics["validation_set"]["version"] == 1 and v1.metrics["val_source"] == "seeded"
    assert v1.metrics["n_labeled"] == 5 and v1.metrics["n_val"] == 1  # the held-out case is not trained on
    assert v1.metrics["n_test"] == 1 and v1.metrics["test"]["n"] == 1  # test: scored, never trained on
    if v1.status == ModelStatus.ACTIVE:  # let the follow-up jobs finish before the next round
        for f in wait_for(lambda: list(Job.objects.filter(project=project, kind=JobKind.BATCH_PROPOSAL)), what="f"):
            wait_job(f.pk, worker)

    # more accepted train cases and a seed of its own: the same validation set, the same version
    for seed in (300, 301):
        accept(upload(project, users["admin"], seed), users["admin"], seed)
    second = wait_job(start_training(project, users["admin"], epochs=1, mode="labeled_only", seed=11).pk, worker)
    assert second.status == JobStatus.SUCCEEDED, second.message + worker.log()
    v2 = ModelVersion.objects.get(training_job=second)
    assert v2.validation_set_id == vs1.pk and v2.metrics["n_val"] == 1 and v2.metrics["n_labeled"] == 7
    if v2.metrics["baseline"] is not None:  # the active model was scored on the same cases in the same round
        assert v2.metrics["baseline"]["n"] == 1
    assert v2.config["settings"]["validation_set_version"] == 1 and v2.config["settings"]["seed"] == 11

    # a reviewer adds a validation case: version 2 (the old case plus the new one), and metrics say so
    new_val = upload(project, users["admin"], 400, split=Split.VAL)
    accept(new_val, users["admin"], 400)
    wait_for(lambda: not Job.objects.filter(project=project, status__in=["pending", "running"]).exists(), what="idle")
    third = wait_job(start_training(project, users["admin"], epochs=1, mode="labeled_only").pk, worker)
    assert third.status == JobStatus.SUCCEEDED, third.message + worker.log()
    v3 = ModelVersion.objects.get(training_job=third)
    vs2 = ValidationSet.objects.get(project=project, version=2)
    assert vs2.case_ids == sorted([*vs1.case_ids, new_val.pk]) and vs2.added == [new_val.pk]
    assert v3.validation_set_id == vs2.pk and v3.metrics["validation_set"]["version"] == 2
    assert v3.metrics["n_val"] == 2 and third.result["metrics"]["validation_set"]["version"] == 2
    assert Case.objects.get(pk=test_case.pk).split == Split.TEST

    rows = client.get(f"/api/projects/{project.pk}/metrics/").json()["models"]
    assert [r["settings"]["validation_set_version"] for r in rows] == [1, 1, 2]
    assert all(r["metrics"]["n_test"] == 1 for r in rows)
