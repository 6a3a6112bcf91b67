"""``/ws/projects/{id}/``: project events (``events.py``) for the project's members (``server/core/access.py``).

Session-authenticated (``AuthMiddlewareStack`` in ``server/asgi.py``); anyone else is closed with code 4403,
also for a project that does not exist (or an id too large to be one).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from server.core.access import membership_get
from server.core.errors import NotFound
from server.studio.events import project_group

CLOSE_FORBIDDEN = 4403
MAX_ID = 2**63 - 1  # a larger id in the path names nothing (and would overflow the database's bigint)


def _is_member(user: Any, project_id: int) -> bool:
    if project_id > MAX_ID:
        return False
    try:
        membership_get(user=user, project_id=project_id)
    except NotFound:
        return False
    return True


class ProjectConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        project_id = int(self.scope["url_route"]["kwargs"]["project_id"])
        allowed = await database_sync_to_async(_is_member)(self.scope.get("user"), project_id)
        await self.accept()  # accept, then close with an application code the client can read
        if not allowed:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = project_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "hello", "project": project_id})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        return  # read-only stream

    async def project_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "event": event["event"], "data": event["data"]})
