"""Websocket routes of the studio (collected in ``server/routing.py``)."""

from __future__ import annotations

from django.urls import path

from server.studio.consumers import ProjectConsumer

websocket_urlpatterns = [path("ws/projects/<int:project_id>/", ProjectConsumer.as_asgi())]
