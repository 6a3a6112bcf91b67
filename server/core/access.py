"""The access policy: who may see a project's objects and who may change them. Every API, page view and
websocket consumer asks here.

- A project exists for a user only through a :class:`Membership`. Anyone else, anonymous callers included, gets
  :class:`NotFound` (404), never 403, so ids reveal nothing. ``is_superuser`` grants no project access: it opens
  Django's admin site (``/admin/``), where a superuser can add themselves to a project; inside the app they are
  members like everyone else.
- Within a project, roles rank annotator < reviewer < admin; an action that needs a higher role than the user
  holds raises :class:`Forbidden` (403).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from server.core.errors import Forbidden, NotFound
from server.core.models import Membership, Role

ROLE_RANK = {Role.ANNOTATOR: 0, Role.REVIEWER: 1, Role.ADMIN: 2}
MAX_ID = 2**63 - 1


def object_id(value: Any, what: str) -> int:
    """``value`` as a database id; anything that cannot be one (not an integer, <= 0, > bigint) is a 404."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise NotFound(f"no {what} {value!r}") from None
    if number <= 0 or number > MAX_ID:
        raise NotFound(f"no {what} {value!r}")
    return number


def _authenticated(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False))


def membership_get(*, user: Any, project_id: Any, role: str | None = None, not_found: str | None = None) -> Membership:
    """The user's membership of ``project_id`` (``.role``; ``.project`` with its template loaded).

    Raises:
        NotFound: the project does not exist, or the user is anonymous or not a member. ``not_found`` is the
            message (e.g. ``"no case 7"`` when the project was reached through one of its objects).
        Forbidden: ``role`` is given and the member's role is lower.
    """
    pid = object_id(project_id, "project")
    membership = (
        Membership.objects.select_related("project__template").filter(project_id=pid, user=user).first()
        if _authenticated(user)
        else None
    )
    if membership is None:
        raise NotFound(not_found or f"no project {project_id}")
    if role is not None and not has_role(membership.role, role):
        raise Forbidden(_needs(role, membership.project, membership.role))
    return membership


def member_projects(*, user: Any) -> QuerySet[Membership]:
    """The memberships of ``user`` (none for anonymous callers): the projects their lists may show."""
    if not _authenticated(user):
        return Membership.objects.none()
    return Membership.objects.filter(user=user)


def role_of(*, project_id: int, user: Any) -> str | None:
    if not _authenticated(user):
        return None
    return Membership.objects.filter(project_id=project_id, user=user).values_list("role", flat=True).first()


def has_role(actual: str | None, needed: str) -> bool:
    return actual is not None and ROLE_RANK[Role(actual)] >= ROLE_RANK[Role(needed)]


def require_role(*, project: Any, user: Any, role: str) -> None:
    """Raise :class:`Forbidden` unless ``user`` holds at least ``role`` in ``project`` (services call this;
    membership itself was checked when the object was looked up, answering 404 to non-members)."""
    actual = role_of(project_id=project.pk, user=user)
    if not has_role(actual, role):
        raise Forbidden(_needs(role, project, actual))


def _needs(role: str, project: Any, actual: str | None) -> str:
    return f"this needs the {role} role in project {project.name!r}; you are {actual or 'not a member'}"
