"""``/ws/jobs/{id}/``: one job's progress, for members of the job's project (``server/core/access.py``).

Session-authenticated (``AuthMiddlewareStack`` in ``server/asgi.py``); anyone else is closed with code 4403
(4404 for a job that does not exist). On connect the consumer sends the row's current state, then relays what
``progress.py`` broadcasts. Clients never send anything that matters.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from server.core.access import membership_get
from server.core.errors import NotFound
from server.jobs.models import Job
from server.jobs.progress import job_group, job_snapshot

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class JobConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        allowed, snapshot = await self._load(job_id)
        await self.accept()  # accept, then close with an application code the client can read
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND if allowed else CLOSE_FORBIDDEN)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "job", "job": snapshot})

    @database_sync_to_async
    def _load(self, job_id: int) -> tuple[bool, dict[str, Any] | None]:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False, None
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return True, None  # 4404 only for an authenticated user; a guess at ids learns nothing more
        try:
            membership_get(user=user, project_id=job.project_id)
        except NotFound:
            return False, None
        return True, job_snapshot(job)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        return  # read-only stream

    async def job_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "job", "job": event["job"]})
