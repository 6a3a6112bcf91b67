"""Websocket routes of the job engine (collected in ``server/routing.py``)."""

from __future__ import annotations

from django.urls import path

from server.jobs.consumers import JobConsumer

websocket_urlpatterns = [path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi())]
