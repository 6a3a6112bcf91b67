"""``/ws/jobs/{id}/``: one job's progress, for members of the job's project (``server/core/access.py``).

Session-authenticated (``AuthMiddlewareStack`` in ``server/asgi.py``): an anonymous caller is closed with code 4403,
a signed-in user with 4404 both for a job that does not exist and for a job of a project they are not a member of
(ids of other projects' jobs are not revealed). On connect the consumer sends the row's current state, then relays what
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
MAX_ID = 2**63 - 1  # a larger id in the path names nothing (and would overflow the database's bigint)


class JobConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        allowed, snapshot = await self._load(job_id) if job_id <= MAX_ID else (self._signed_in(), None)
        await self.accept()  # accept, then close with an application code the client can read
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND if allowed else CLOSE_FORBIDDEN)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "job", "job": snapshot})

    def _signed_in(self) -> bool:
        user = self.scope.get("user")
        return user is not None and user.is_authenticated

    @database_sync_to_async
    def _load(self, job_id: int) -> tuple[bool, dict[str, Any] | None]:
        """(signed in, the job's snapshot if the user may see it); missing and foreign jobs look the same."""
        if not self._signed_in():
            return False, None
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            return True, None
        try:
            membership_get(user=self.scope["user"], project_id=job.project_id)
        except NotFound:
            return True, None
        return True, job_snapshot(job)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        return  # read-only stream

    async def job_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "job", "job": event["job"]})
