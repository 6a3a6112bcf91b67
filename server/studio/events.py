"""Project events over Channels: ``{"event", "data"}`` to the group ``project.<id>`` (``/ws/projects/<id>/``).

Events: ``proposal.created``, ``model.created``, ``model.promoted``, ``case.accepted``. Each is sent when the
transaction that made the change commits, through the job engine's broadcast helper.
"""

from __future__ import annotations

from typing import Any

from server.jobs.progress import group_send_on_commit

PROJECT_MESSAGE = "project.event"  # consumer handler: project_event


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def project_event(project_id: int, event: str, data: dict[str, Any]) -> None:
    """Send ``{"event": event, "data": data}`` to ``project.<id>`` once the surrounding transaction commits."""
    group_send_on_commit(project_group(project_id), {"type": PROJECT_MESSAGE, "event": event, "data": data})
