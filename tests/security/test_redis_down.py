"""Issue 13 item 4: with Redis down, starting a training answered a 500 after 19 s and left a ``pending`` job with no
task, so every later training got 409 ``training_running``; the token endpoint gave an HTML 500.

The test runs its own redis-server (never the system one) and a daphne subprocess on the test database pointed at
it, stops that Redis, checks the JSON 503s and that no job is left pending, starts Redis again and starts a training
whose task is then in the queue.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from django.db import connection
from django.utils import timezone

from tests.security.support_reliability import RedisServer, WebServer, http, server_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _project_ready_to_train():
    """An admin, a token and a project with one accepted case (the server below needs one for a first model)."""
    import io

    from django.contrib.auth import get_user_model
    from knox.models import AuthToken
    from PIL import Image

    from server.studio.services.cases import case_create
    from server.studio.services.masks import mask_save
    from server.studio.services.projects import project_create

    user = get_user_model().objects.create_user("trainer", password="a long test password")
    token = AuthToken.objects.create(user=user)[1]
    project = project_create(user=user, name="Queue", template="lung-infection")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, size=(32, 32), dtype=np.uint8)).save(buf, "PNG")
    case = case_create(project=project, user=user, data=buf.getvalue(), filename="one.png")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[4:20, 4:20] = 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, "PNG")
    mask_save(case=case, user=user, png_bytes=out.getvalue(), base_version=None, accept=True, without_report=True)
    return user, token, project


def _queued(redis_url: str, task_id: str) -> bool:
    """Whether some Redis list (a Celery queue, whatever its name) holds a message for ``task_id``."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(count=1000):
        if client.type(key) == b"list" and any(task_id.encode() in m for m in client.lrange(key, 0, -1)):
            return True
    return False


def test_training_with_redis_down_fails_fast_and_leaves_no_phantom_job(tmp_path: Path, settings) -> None:
    # the server below logs in with the production hashers; the suite's fast MD5 hasher would not verify there
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    from server.jobs.models import Job, JobStatus

    _, token, project = _project_ready_to_train()
    own_redis = RedisServer(tmp_path / "redis").start()
    db = connection.settings_dict
    env = server_env(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=own_redis.url(1),
        LVIT_VAR_DIR=str(tmp_path / "var"),
        LVIT_MEDIA_ROOT=str(tmp_path / "media"),
        LVIT_MIN_ACCEPTED_FOR_TRAINING="1",
    )
    server = WebServer(env, tmp_path / "daphne.log").start()
    train_url = f"{server.url}/api/projects/{project.pk}/training-jobs/"
    try:
        status, body, _ = http(
            "POST",
            f"{server.url}/api/auth/token/",
            json_body={"username": "trainer", "password": "a long test password"},
        )
        assert status == 200, body
        own_redis.stop()

        status, body, headers = http("POST", train_url, token=token, json_body={"epochs": 1})
        assert status == 503, (status, str(body)[:500])
        assert body["error"] == "queue_unavailable" and "Redis" in body["detail"], body
        assert headers.get("Retry-After")
        assert not Job.objects.filter(project=project, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).exists()
        failed = Job.objects.get(project=project)
        assert failed.status == JobStatus.FAILED and "never queued" in failed.message

        status, body, headers = http(
            "POST",
            f"{server.url}/api/auth/token/",
            json_body={"username": "trainer", "password": "a long test password"},
        )
        assert status == 503 and isinstance(body, dict), (status, str(body)[:300])  # JSON, not an HTML 500
        assert body["error"] == "redis_unavailable" and headers.get("Retry-After")

        own_redis.start()
        status, body, _ = http("POST", train_url, token=token, json_body={"epochs": 1})
        assert status == 201, (status, str(body)[:500])  # no 409 training_running from a phantom job
        job = Job.objects.get(pk=body["id"])
        assert job.status == JobStatus.PENDING and _queued(own_redis.url(1), job.celery_task_id)
        status, body, _ = http(
            "POST",
            f"{server.url}/api/auth/token/",
            json_body={"username": "trainer", "password": "a long test password"},
        )
        assert status == 200, body
    finally:
        server.stop()
        own_redis.stop()


def test_reaper_fails_pending_jobs_that_no_worker_took(settings) -> None:
    """A job whose task was lost (e.g. Redis restarted without its queue) stays pending forever without the reaper;
    after LVIT_JOB_PENDING_TIMEOUT_S it is failed, so the project's next training can start."""
    from server.jobs.models import Job, JobStatus
    from server.jobs.services import job_reap_pending
    from server.studio.models import JobKind
    from server.studio.services.training import training_job_create

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 1
    user, _, project = _project_ready_to_train()
    lost = Job.objects.create(kind=JobKind.TRAINING, task_name="gpu.train", project=project, celery_task_id="lost")
    Job.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(hours=7))
    fresh = Job.objects.create(kind=JobKind.EVALUATION, task_name="gpu.evaluate", project=project, celery_task_id="x")
    requeued = Job.objects.create(kind=JobKind.PROPOSAL, task_name="gpu.propose_mask", project=project)
    Job.objects.filter(pk=requeued.pk).update(
        created_at=timezone.now() - timedelta(hours=9), heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    from server.core.errors import Conflict

    with pytest.raises(Conflict) as blocked:
        training_job_create(project=project, params={"epochs": 1}, actor=user)
    assert blocked.value.code == "training_running"

    settings.LVIT_JOB_PENDING_TIMEOUT_S = 6 * 3600
    assert job_reap_pending() == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == JobStatus.FAILED and "no worker took this job" in lost.message
    assert Job.objects.get(pk=fresh.pk).status == JobStatus.PENDING
    assert Job.objects.get(pk=requeued.pk).status == JobStatus.PENDING  # requeued 5 min ago: still waiting
    assert training_job_create(project=project, params={"epochs": 1}, actor=user).status == JobStatus.PENDING
