"""Websocket routes of the workers app (appended to ``server.routing.websocket_urlpatterns``)."""

from __future__ import annotations

from django.urls import path

from server.workers.consumers import JobConsumer, ProjectConsumer

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/", ProjectConsumer.as_asgi()),
]
