"""Helpers shared by the services: audit events, files written only after validation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.fields.files import FieldFile

from server.studio.models import AuditEvent, Project


def audit(*, project: Project | None, actor: Any, action: str, target: Any = None, **data: Any) -> AuditEvent:
    return AuditEvent.objects.create(
        project=project,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        target_type=type(target).__name__ if target is not None else "",
        target_id=str(getattr(target, "pk", "") or ""),
        data=data,
    )


class FileJanitor:
    """Tracks files written during a service call; deletes them if the call fails (no orphan files)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def save(self, field: FieldFile, name: str, data: bytes) -> None:
        field.save(name, ContentFile(data), save=False)
        self.names.append(field.name)

    def cleanup(self) -> None:
        for name in self.names:
            with suppress(Exception):  # cleanup is best effort; the original error matters more
                default_storage.delete(name)
        self.names.clear()


@contextmanager
def written_files() -> Iterator[FileJanitor]:
    """Files saved through the janitor are deleted when the block raises or the transaction rolls back."""
    janitor = FileJanitor()
    try:
        yield janitor
    except BaseException:
        janitor.cleanup()
        raise


def delete_files_on_commit(names: list[str]) -> None:
    """Delete storage files once the surrounding transaction commits (never for rolled-back deletes)."""
    names = [n for n in names if n]

    def run() -> None:
        for name in names:
            with suppress(Exception):
                default_storage.delete(name)

    transaction.on_commit(run)
