"""Websocket access rules and the training-loop API (real Redis channel layer; no worker process needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from server.jobs.models import Job
from server.studio.models import JobKind
from tests.workers.test_worker_cycle import close_thread_connections, make_project, make_users, session_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_templates")]


@pytest.fixture(autouse=True)
def own_channel_prefix(settings) -> None:
    """Parallel runs share Redis and restart ids at 1: give this test its own channel-layer key prefix."""
    import uuid

    from tests.workers.celery_isolated import channel_layers

    settings.CHANNEL_LAYERS = channel_layers(settings.CHANNEL_LAYERS, f"lvit-test-{uuid.uuid4().hex[:10]}")


async def _connect(path: str, headers: list) -> tuple[Any, dict]:
    from channels.testing import WebsocketCommunicator

    from server.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=15)
    assert connected
    return communicator, await communicator.receive_output(timeout=10)


def test_job_socket_is_for_project_members_only(worker_media) -> None:
    users = make_users()
    project = make_project(users)
    job = Job.objects.create(project=project, kind=JobKind.TRAINING, progress={"epoch": 3})
    member, outsider = session_headers(users["annotator"]), session_headers(users["outsider"])
    anonymous = [(b"origin", b"http://testserver")]
    root = session_headers(get_user_model().objects.create_superuser("root", password=None))

    async def scenario() -> None:
        c, first = await _connect(f"/ws/jobs/{job.pk}/", member)
        assert first["type"] == "websocket.send" and '"epoch": 3' in first["text"]  # current state on connect
        await c.disconnect()
        # a superuser who is not a member is an outsider too; an outsider cannot tell a foreign job from a missing one
        for headers, code in ((outsider, 4404), (anonymous, 4403), (root, 4404)):
            c, first = await _connect(f"/ws/jobs/{job.pk}/", headers)
            assert first == {"type": "websocket.close", "code": code}
            await c.disconnect()  # end the consumer now, not when asyncio.run cancels what is left
        c, first = await _connect(f"/ws/jobs/{job.pk + 1000}/", member)
        assert first == {"type": "websocket.close", "code": 4404}
        await c.disconnect()
        for headers in (outsider, root):
            c, first = await _connect(f"/ws/projects/{project.pk}/", headers)
            assert first == {"type": "websocket.close", "code": 4403}
            await c.disconnect()
        await close_thread_connections()

    asyncio.run(scenario())


def test_project_socket_relays_project_events(worker_media) -> None:
    from asgiref.sync import sync_to_async

    from server.studio.events import project_event

    users = make_users()
    project = make_project(users)
    headers = session_headers(users["annotator"])

    async def scenario() -> None:
        c, first = await _connect(f"/ws/projects/{project.pk}/", headers)
        assert '"hello"' in first["text"]
        await sync_to_async(project_event)(project.pk, "case.accepted", {"case": 7, "mask": 9})
        assert await c.receive_json_from(timeout=10) == {
            "type": "event",
            "event": "case.accepted",
            "data": {"case": 7, "mask": 9},
        }
        await c.disconnect()
        await close_thread_connections()

    asyncio.run(scenario())


def test_readiness_and_policy_endpoints(settings) -> None:
    from django.test import Client

    settings.LVIT_MIN_ACCEPTED_FOR_TRAINING = 3
    settings.ML_DEVICE = "cpu"  # the device kind when no training worker announced one (test workers: CPU)
    users = make_users()
    project = make_project(users)
    client = Client()
    client.force_login(users["annotator"])
    body = client.get(f"/api/projects/{project.pk}/training-readiness/").json()
    defaults, estimate = body.pop("defaults"), body.pop("estimate")
    assert body == {"ready": False, "accepted": 0, "needed": 3, "missing": 3, "has_active_model": False}
    assert defaults == {"img_size": 112, "epochs": 3, "device": "cpu"}
    assert (estimate["images"], estimate["seconds"], estimate["img_size"]) == (0, 0.0, 112)
    assert client.get(f"/api/projects/{project.pk}/training-policy/").json()["promotion"] == "auto_if_better"
    put = {"promotion": "manual", "min_improvement": 0.01}
    assert (
        client.put(f"/api/projects/{project.pk}/training-policy/", put, content_type="application/json").status_code
        == 403
    )
    client.force_login(users["admin"])
    response = client.put(f"/api/projects/{project.pk}/training-policy/", put, content_type="application/json")
    assert response.status_code == 200 and response.json() == {**put, "min_dice": 0.3}  # the floor's default
    bad = client.post(f"/api/projects/{project.pk}/training-jobs/", {"img_size": 30}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid"
    client.force_login(users["outsider"])
    assert client.get(f"/api/projects/{project.pk}/training-readiness/").status_code == 404
