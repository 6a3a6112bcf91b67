"""Websocket routes. Each domain app appends its own consumers here."""

from __future__ import annotations

from server.workers.routing import websocket_urlpatterns as workers_websockets

websocket_urlpatterns: list = [*workers_websockets]
