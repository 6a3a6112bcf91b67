"""Projects and their members."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from server.core.access import membership_get, require_role
from server.core.errors import Conflict, NotFound, ServiceError
from server.core.models import Membership, Role
from server.studio.models import Case, Project, ReportTemplate
from server.studio.services.common import audit, delete_files_on_commit


def _template(template: ReportTemplate | str | int | None) -> ReportTemplate:
    if isinstance(template, ReportTemplate):
        return template
    if template is None or template == "":
        template = "free-text"
    lookup = {"pk": int(template)} if str(template).isdigit() else {"slug": str(template)}
    found = ReportTemplate.objects.filter(**lookup).first()
    if found is None:
        slugs = list(ReportTemplate.objects.values_list("slug", flat=True))
        raise ServiceError({"template": f"unknown template {template!r}; use one of {slugs}"})
    return found


@transaction.atomic
def project_create(
    *, user: Any, name: str, description: str = "", template: ReportTemplate | str | int | None = None
) -> Project:
    name = (name or "").strip()
    if not name:
        raise ServiceError({"name": "a project needs a name"})
    if Project.objects.filter(name=name).exists():
        raise Conflict(f"a project named {name!r} already exists", code="duplicate_name")
    try:
        with transaction.atomic():
            project = Project.objects.create(
                name=name, description=description, template=_template(template), created_by=user
            )
    except IntegrityError:
        raise Conflict(f"a project named {name!r} already exists", code="duplicate_name") from None
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    audit(project=project, actor=user, action="project.created", target=project)
    return project


@transaction.atomic
def project_update(
    *,
    project: Project,
    user: Any,
    name: str | None = None,
    description: str | None = None,
    pacs_store_on_accept: bool | None = None,
) -> Project:
    require_role(project=project, user=user, role=Role.ADMIN)
    changed = []
    if name is not None and name.strip() and name.strip() != project.name:
        if Project.objects.filter(name=name.strip()).exclude(pk=project.pk).exists():
            raise Conflict(f"a project named {name!r} already exists", code="duplicate_name")
        project.name = name.strip()
        changed.append("name")
    if description is not None and description != project.description:
        project.description = description
        changed.append("description")
    if pacs_store_on_accept is not None and pacs_store_on_accept != project.pacs_store_on_accept:
        project.pacs_store_on_accept = pacs_store_on_accept
        changed.append("pacs_store_on_accept")
    if changed:
        project.save(update_fields=changed)
    return project


@transaction.atomic
def project_delete(*, project: Project, user: Any) -> None:
    require_role(project=project, user=user, role=Role.ADMIN)
    names: list[str] = []
    for case in Case.objects.filter(project=project).prefetch_related("masks").iterator(chunk_size=500):
        names += [case.image.name, case.original.name]
        names += [m.png.name for m in case.masks.all()] + [m.probabilities.name for m in case.masks.all()]
    names += [mv.checkpoint.name for mv in project.model_versions.all()]
    audit(project=None, actor=user, action="project.deleted", target=project, name=project.name)
    project.delete()
    delete_files_on_commit(names)


def _user(username_or_id: str | int) -> Any:
    User = get_user_model()
    value = str(username_or_id)
    user = User.objects.filter(pk=int(value)).first() if value.isdigit() else None
    user = user or User.objects.filter(username=value).first()
    if user is None:
        raise NotFound(f"no user {username_or_id!r}")
    return user


@transaction.atomic
def member_set(*, project: Project, user: Any, member: str | int, role: str) -> Membership:
    """Add ``member`` (username or id) with ``role``, or change their role. Admins only."""
    require_role(project=project, user=user, role=Role.ADMIN)
    if role not in Role.values:
        raise ServiceError({"role": f"unknown role {role!r}; use one of {Role.values}"})
    target = _user(member)
    membership, created = Membership.objects.select_for_update().get_or_create(
        project=project, user=target, defaults={"role": role}
    )
    if not created and membership.role != role:
        if membership.role == Role.ADMIN and role != Role.ADMIN:
            _keep_an_admin(project=project, leaving=membership)
        membership.role = role
        membership.save(update_fields=["role"])
    audit(project=project, actor=user, action="member.set", target=membership, member=target.username, role=role)
    return membership


def _keep_an_admin(*, project: Project, leaving: Membership) -> None:
    others = Membership.objects.filter(project=project, role=Role.ADMIN).exclude(pk=leaving.pk)
    if not others.exists():
        raise Conflict("a project keeps at least one admin; make someone else admin first", code="last_admin")


@transaction.atomic
def member_remove(*, project: Project, user: Any, member: str | int) -> None:
    require_role(project=project, user=user, role=Role.ADMIN)
    target = _user(member)
    membership = Membership.objects.select_for_update().filter(project=project, user=target).first()
    if membership is None:
        raise NotFound(f"{target.username!r} is not a member of this project")
    if membership.role == Role.ADMIN:
        _keep_an_admin(project=project, leaving=membership)
    Case.objects.filter(project=project, assignee=target).update(assignee=None, assigned_at=None)
    membership.delete()
    audit(project=project, actor=user, action="member.removed", member=target.username)


PREFERENCES_MAX_BYTES = 16_384


@transaction.atomic
def member_preferences_set(*, project: Project, user: Any, preferences: dict) -> dict:
    """Replace the user's own editor preferences in the project (any member; a JSON object up to 16 KiB)."""
    if not isinstance(preferences, dict):
        raise ServiceError("preferences must be a JSON object")
    size = len(json.dumps(preferences))
    if size > PREFERENCES_MAX_BYTES:
        raise ServiceError(f"preferences are {size} bytes as JSON; at most {PREFERENCES_MAX_BYTES}")
    membership = membership_get(user=user, project_id=project.pk)
    Membership.objects.filter(pk=membership.pk).update(preferences=preferences)
    return preferences
