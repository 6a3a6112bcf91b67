"""Pages of the browser UI. Each view checks access, then renders a shell whose ES module talks to the REST API.

Views stay thin: the access policy decides whether a page exists for the user (404 otherwise, like the API), and
the page gets a small JSON config (ids, role, URLs) through ``json_script``. Three small editor-only endpoints live
here because the REST API has no equivalent: :func:`case_hu` (a DICOM case's Hounsfield units for CT
window/level), :func:`case_pseudo_png` (the EPI soft map as a layer) and :func:`case_propose` ("propose again").
"""

from __future__ import annotations

import struct
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from server.core.errors import NotFound
from server.jobs.progress import job_snapshot
from server.studio import selectors
from server.studio.imaging import WINDOW_PRESETS
from server.studio.models import Case, Project
from server.studio.services.pacs import pacs_status
from server.studio.services.proposals import case_propose as proposal_for_case


def _project_for(request: HttpRequest, project_id: int) -> Project:
    """The project, with the user's role as ``my_role``, by the access policy: 404 for non-members."""
    try:
        return selectors.project_get(user=request.user, project_id=project_id)
    except NotFound as exc:
        raise Http404(str(exc.detail)) from None


def _case_for(request: HttpRequest, case_id: int) -> Case:
    try:
        return selectors.case_get(user=request.user, case_id=case_id)
    except NotFound as exc:
        raise Http404(str(exc.detail)) from None


def _config(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "user": {"id": request.user.pk, "username": request.user.get_username(), "staff": request.user.is_staff},
        **extra,
    }


@login_required
def projects_page(request: HttpRequest) -> HttpResponse:
    templates = list(selectors.template_list().values("id", "slug", "name"))
    return render(request, "annotator_ui/projects.html", {"config": _config(request, templates=templates)})


def _project_page(request: HttpRequest, project: Project, template_name: str, page: str, **extra: Any) -> HttpResponse:
    role = project.my_role
    config = _config(
        request,
        project={"id": project.pk, "name": project.name, "role": role, "template": project.template.slug},
        **extra,
    )
    return render(request, template_name, {"project": project, "role": role, "page": page, "config": config})


@login_required
def worklist_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_for(request, project_id)
    return _project_page(
        request,
        project,
        "annotator_ui/worklist.html",
        "worklist",
        report_template={"fields": project.template.fields, "pattern": project.template.pattern},
    )


@login_required
def case_page(request: HttpRequest, project_id: int, case_id: int) -> HttpResponse:
    project = _project_for(request, project_id)
    case = _case_for(request, case_id)
    if case.project_id != project.pk:
        raise Http404(f"no case {case_id} in this project")
    presets = [{"id": k, "center": c, "width": w} for k, (c, w) in WINDOW_PRESETS.items()]
    return _project_page(
        request,
        project,
        "annotator_ui/case.html",
        "case",
        case={
            "id": case.pk,
            "name": case.name,
            "dicom": case.original_format == "dicom",
            "has_pseudo": selectors.case_has_pseudo_label(case=case),
        },
        report_template={"fields": project.template.fields, "pattern": project.template.pattern},
        window_presets=presets,
        preferences=selectors.member_preferences(user=request.user, project_id=project.pk),
        preferences_url=reverse("studio-preferences", args=[project.pk]),
    )


@login_required
def jobs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _project_page(request, _project_for(request, project_id), "annotator_ui/jobs.html", "jobs")


@login_required
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_for(request, project_id)
    return _project_page(request, project, "annotator_ui/export.html", "export", pacs=pacs_status())


@login_required
def pacs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_for(request, project_id)
    return _project_page(request, project, "annotator_ui/pacs.html", "pacs", pacs=pacs_status())


@login_required
def project_admin_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _project_page(request, _project_for(request, project_id), "annotator_ui/project_admin.html", "project")


@login_required
@require_GET
def case_hu(request: HttpRequest, case_id: int) -> HttpResponse:
    """``GET /cases/<id>/hu/``: a DICOM case's values as ``<u32 width><u32 height><float32 LE pixels>``.

    Used only by the editor's window/level presets; 404 for non-DICOM cases and for non-members.
    """
    try:
        values = selectors.case_hounsfield(case=_case_for(request, case_id))
    except NotFound as exc:
        raise Http404(str(exc.detail)) from None
    height, width = values.shape
    response = HttpResponse(struct.pack("<II", width, height) + values.astype("<f4").tobytes())
    response["Content-Type"] = "application/octet-stream"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def case_pseudo_png(request: HttpRequest, case_id: int) -> HttpResponse:
    """``GET /cases/<id>/pseudo.png``: the case's EPI pseudo-label soft map (uint8 PNG, p*255); 404 when none."""
    try:
        pseudo = selectors.pseudo_label_get(case=_case_for(request, case_id))
    except NotFound as exc:
        raise Http404(str(exc.detail)) from None
    response = FileResponse(pseudo.soft_map.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, no-cache"
    return response


@extend_schema(exclude=True)  # a page endpoint of the editor, not part of the REST API's schema
@api_view(["POST"])
def case_propose(request: Request, case_id: int) -> Response:
    """``POST /cases/<id>/propose/``: queue a fresh proposal with the active model and the case's current report.

    Answers the job (202) to follow on ``/ws/jobs/<id>/``; 409 ``no_active_model`` when the project has no model.
    A proposal still pending is reused (it reads the newest report when it runs). Errors have the API's shape.
    """
    case = selectors.case_get(user=request.user, case_id=case_id)
    return Response(job_snapshot(proposal_for_case(case=case, user=request.user)), status=202)
