"""Two worker pools, as ``make run`` and ``deploy/`` start them: a real training-pool worker process and a real
inference-pool worker process (plus ``default``) on this run's own queues.

A proposal completes while a training round runs on the other pool; a queued job reports its place in its queue
and the device of the workers that will run it; a finished round records its throughput, which the next
estimate uses.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from django.test import Client

from server.jobs.models import Job, JobStatus
from server.jobs.presence import queue_workers
from server.studio.models import CaseState, JobKind, MaskKind, MaskVersion, Project
from server.studio.services.masks import load_mask
from server.studio.services.proposals import proposal_job_request
from tests.support.celery_worker import WorkerProcess
from tests.workers.conftest import TEST_IMG_SIZE, _wait_idle, wait_for, wait_job
from tests.workers.test_worker_cycle import labeled_project, make_project, make_users, random_model, upload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


class Pools:
    def __init__(self, training: WorkerProcess, inference: WorkerProcess, namespace: str) -> None:
        self.training, self.inference, self.namespace = training, inference, namespace

    def log(self) -> str:
        return f"training worker:\n{self.training.log()}\ninference worker:\n{self.inference.log()}"


@pytest.fixture(scope="module")
def pools(celery_worker: WorkerProcess) -> Iterator[Pools]:
    """The session's all-queues worker steps aside; one worker per pool takes over its namespace and settings."""
    namespace = celery_worker.env["LVIT_TEST_NAMESPACE"]
    celery_worker.stop()
    env = {**celery_worker.env, "LVIT_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}  # one core each, as make run

    def worker(pool: str, queues: tuple[str, ...]) -> WorkerProcess:
        log_dir = celery_worker.log_dir / pool
        log_dir.mkdir(exist_ok=True)
        name = lambda n: f"{pool}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"  # noqa: E731
        return WorkerProcess(env, log_dir, app=celery_worker.app, queues=queues, node_name=name)

    training = worker("training", (f"{namespace}.training",))
    inference = worker("inference", (f"{namespace}.inference", f"{namespace}.default"))
    try:
        training.start()
        inference.start()
        yield Pools(training, inference, namespace)
    finally:
        training.stop()
        inference.stop()


@pytest.fixture
def both(pools: Pools, seeded_templates: None) -> Iterator[Pools]:
    yield pools
    # cancel what is queued or running; each pool's running task notices at its next progress write and stops
    _wait_idle(pools.training)
    _wait_idle(pools.inference)


def named_labeled_project(users: dict, name: str, **sizes: int) -> Project:
    """``labeled_project`` (which names every project "p") under its own name, so a test can make several."""
    project = labeled_project(users, **sizes)
    Project.objects.filter(pk=project.pk).update(name=name)
    project.refresh_from_db()
    return project


def job_json(client: Client, job: Job) -> dict:
    response = client.get(f"/api/jobs/{job.pk}/")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_proposal_completes_while_a_training_round_runs_on_the_other_pool(both, settings, tmp_path) -> None:
    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 2
    users = make_users()
    client = Client()
    client.force_login(users["admin"])

    # Each pool announced itself with its device; a job's queue is the pool its task is routed to.
    wait_for(lambda: queue_workers(f"{both.namespace}.training"), what="training pool announced")
    wait_for(lambda: queue_workers(f"{both.namespace}.inference"), what="inference pool announced")

    busy = named_labeled_project(users, "busy", train=4, val=2, unlabeled=0)
    from server.studio.services.training import training_job_create

    training = training_job_create(
        project=busy,
        params={"img_size": TEST_IMG_SIZE, "batch_size": 2, "epochs": 1000, "mode": "labeled_only"},
        actor=users["admin"],
    )
    wait_job(training.pk, both.training, statuses=(JobStatus.RUNNING,))
    assert job_json(client, training)["device"] == "cpu"
    wait_for(lambda: Job.objects.get(pk=training.pk).progress.get("phase") == "train", 120, "training steps")

    other = make_project(users, name="served")
    random_model(other, tmp_path)
    case = upload(other, users["admin"], 7)
    proposal = wait_for(lambda: Job.objects.filter(case=case, kind=JobKind.PROPOSAL).first(), what="proposal job")
    assert proposal.queue == f"{both.namespace}.inference" and training.queue == f"{both.namespace}.training"
    proposal = wait_job(proposal.pk, both.inference, timeout=120)

    training.refresh_from_db()
    assert proposal.status == JobStatus.SUCCEEDED, proposal.message + both.log()
    assert training.status == JobStatus.RUNNING, "the proposal did not wait for the training round to end"
    case.refresh_from_db()
    assert case.state == CaseState.PROPOSED and case.head_mask.kind == MaskKind.PROPOSAL
    body = job_json(client, proposal)
    assert body["device"] == "cpu" and body["queue_position"] is None and body["queue"].endswith("inference")

    # A second round (another project) waits behind the running one: position 1 on the training pool's CPU,
    # a third one position 2.
    second = named_labeled_project(users, "second", train=2, val=1, unlabeled=0)
    third = named_labeled_project(users, "third", train=2, val=1, unlabeled=0)
    queued = [
        training_job_create(
            project=p, params={"img_size": TEST_IMG_SIZE, "batch_size": 2, "epochs": 1}, actor=users["admin"]
        )
        for p in (second, third)
    ]
    first, then = (job_json(client, j) for j in queued)
    assert (first["status"], first["queue_position"], first["device"]) == ("pending", 1, "cpu")
    assert (then["status"], then["queue_position"], then["device"]) == ("pending", 2, "cpu")


def test_a_finished_round_records_its_throughput_and_the_next_estimate_uses_it(both, settings) -> None:
    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 2
    users = make_users()
    client = Client()
    client.force_login(users["admin"])
    project = labeled_project(users, train=3, val=1, unlabeled=1)
    Job.objects.filter(kind=JobKind.TRAINING).delete()  # no earlier measurement in this database

    before = client.get(f"/api/projects/{project.pk}/training-readiness/").json()
    assert before["defaults"] == {"img_size": 112, "epochs": 3, "device": "cpu"}  # a CPU training pool
    estimate = before["estimate"]
    assert estimate["basis"] == "default" and estimate["device"] == "cpu" and estimate["img_size"] == 112
    assert estimate["images"] == 5 and estimate["epochs"] == 3  # 3 train + 1 val accepted, 1 unlabeled
    assert estimate["seconds"] == pytest.approx(estimate["seconds_per_image_epoch"] * 5 * 3, rel=0.01)

    from server.studio.services.training import training_job_create

    job = training_job_create(
        project=project, params={"img_size": TEST_IMG_SIZE, "batch_size": 2, "epochs": 2}, actor=users["admin"]
    )
    job = wait_job(job.pk, both.training, timeout=300)
    assert job.status == JobStatus.SUCCEEDED, job.message + both.log()
    measured = job.result["throughput"]
    assert measured["device"] == "cpu" and measured["img_size"] == TEST_IMG_SIZE
    assert measured["images"] == 5 and measured["epochs"] == 2 and measured["seconds_per_image_epoch"] > 0

    # promote it by hand (a 2-epoch model need not pass the promotion guard): the next round fine-tunes it at its
    # 32 px, estimated from the measured rate
    from server.studio.models import ModelVersion
    from server.studio.services.registry import model_version_activate

    if not job.result["promoted"]:
        model_version_activate(
            model_version=ModelVersion.objects.get(pk=job.result["model_version"]), user=users["admin"]
        )
    after = client.get(f"/api/projects/{project.pk}/training-readiness/").json()["estimate"]
    assert after["basis"] == "measured" and after["img_size"] == TEST_IMG_SIZE
    assert after["seconds_per_image_epoch"] == pytest.approx(measured["seconds_per_image_epoch"], rel=1e-3)
    # seconds are rounded to 0.1 s (and the rate to 1e-4 s, x15): a short round needs that absolute bound too
    expected = after["seconds_per_image_epoch"] * 15
    assert after["images"] == 5 and after["seconds"] == pytest.approx(expected, rel=0.01, abs=0.051)


def test_a_restarted_inference_worker_warms_up_before_its_first_proposal(both, tmp_path) -> None:
    """Worker start (issue 16): the inference pool loads the text model (OpenVINO, without transformers) and the
    active model of a recently activated project, and runs one forward, before any request; the first proposal
    then finds the model loaded instead of loading it."""
    users = make_users()
    project = make_project(users, name="warm")
    random_model(project, tmp_path)
    both.inference.stop()
    both.inference.start()
    wait_for(lambda: "warm-up done" in both.inference.log(), 180, "the warm-up to finish", both.inference)
    log = both.inference.log()
    assert f"'project': {project.pk}" in log and "'text_engine': 'openvino'" in log, log
    assert log.count("loaded model version") == 1
    case = upload(project, users["admin"], 11)
    proposal = wait_for(lambda: Job.objects.filter(case=case, kind=JobKind.PROPOSAL).first(), what="proposal job")
    proposal = wait_job(proposal.pk, both.inference, timeout=120)
    assert proposal.status == JobStatus.SUCCEEDED, proposal.message + both.log()
    assert both.inference.log().count("loaded model version") == 1  # served by the warmed-up model

    # The next start finds the model converted and verified (the manifest the first start wrote): it serves from
    # OpenVINO and numpy without importing torch at all (ml.lite), and the proposal equals the torch-served one.
    both.inference.stop()
    both.inference.start()
    wait_for(lambda: "warm-up done" in both.inference.log(), 180, "the second warm-up to finish", both.inference)
    log = both.inference.log()
    assert "'torch_imported': False" in log and f"'project': {project.pk}" in log, log
    first = MaskVersion.objects.get(case=case, kind=MaskKind.PROPOSAL)
    again = proposal_job_request(case_id=case.pk, reason="requested")
    again = wait_job(again.pk, both.inference, timeout=120)
    assert again.status == JobStatus.SUCCEEDED, again.message + both.log()
    assert "'torch_imported': False" in both.inference.log()
    second = MaskVersion.objects.filter(case=case, kind=MaskKind.PROPOSAL).order_by("-pk").first()
    assert second.pk != first.pk
    assert np.mean(load_mask(second) != load_mask(first)) < 1e-3  # equal but for pixels at the threshold
