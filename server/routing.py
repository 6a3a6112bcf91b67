"""Websocket routes: the job engine's (``/ws/jobs/<id>/``) and the studio's (``/ws/projects/<id>/``)."""

from __future__ import annotations

from server.jobs.routing import websocket_urlpatterns as job_websockets
from server.studio.routing import websocket_urlpatterns as studio_websockets

websocket_urlpatterns: list = [*job_websockets, *studio_websockets]
