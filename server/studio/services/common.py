"""Helpers shared by the services: audit events, files written only after validation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.fields.files import FieldFile

from server.core.errors import ServiceError
from server.studio.models import AuditEvent, Project

MAX_LISTED_PROBLEMS = 200


def problem_text(exc: ServiceError) -> str:
    """A service error's detail as one line (field errors joined)."""
    detail = exc.detail
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {v}" for k, v in detail.items())
    return str(detail)


def problems_error(errors: list[dict[str, str]], *, default_code: str) -> ServiceError:
    """One 400 for every bad file of an upload or import: ``detail = {"message", "errors": [{"file", "error"}],
    "more_errors"}``. The code is the problems' own when they share one (e.g. ``corrupt_image``), else
    ``default_code``; each problem may carry its ``code``, which is not listed."""
    codes = {e.get("code", default_code) for e in errors}
    listed = [{"file": e["file"], "error": e["error"]} for e in errors[:MAX_LISTED_PROBLEMS]]
    first = listed[0]
    message = (
        f"{first['file']}: {first['error']}"
        if len(errors) == 1
        else f"{len(errors)} problems; nothing was stored. First: {first['file']}: {first['error']}"
    )
    return ServiceError(
        {"message": message, "errors": listed, "more_errors": max(0, len(errors) - MAX_LISTED_PROBLEMS)},
        code=codes.pop() if len(codes) == 1 else default_code,
    )


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
