"""Pages of the browser UI. Each view checks access, then renders a shell whose ES module talks to the REST API.

Views stay thin: membership decides whether a page exists for the user (404 otherwise, like the API), and the
page gets a small JSON config (ids, role, URLs) through ``json_script``. Three small editor-only endpoints live
here because the REST API has no equivalent: :func:`case_hu` (a DICOM case's Hounsfield units for CT
window/level), :func:`case_pseudo_png` (the EPI soft map as a layer) and :func:`case_propose` ("propose again").
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from server.core.errors import NotFound
from server.studio import selectors
from server.studio.models import Case, Project, PseudoLabel, ReportTemplate

# The editor's CT presets (centre, width in HU), the same values the server uses when converting uploads.
try:
    from server.studio.imaging import WINDOW_PRESETS
except ImportError:  # pragma: no cover - the imaging module ships with the studio app
    WINDOW_PRESETS = {}


def _project_for(request: HttpRequest, project_id: int) -> tuple[Project, str]:
    """The project and the user's role in it, by the access policy: 404 for non-members."""
    try:
        project = selectors.project_get(user=request.user, project_id=project_id)
    except NotFound as exc:
        raise Http404(str(exc.detail)) from None
    return project, project.my_role


def _config(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "user": {"id": request.user.pk, "username": request.user.get_username(), "staff": request.user.is_staff},
        **extra,
    }


@login_required
def projects_page(request: HttpRequest) -> HttpResponse:
    templates = list(ReportTemplate.objects.order_by("id").values("id", "slug", "name"))
    return render(request, "annotator_ui/projects.html", {"config": _config(request, templates=templates)})


def _project_page(request: HttpRequest, project_id: int, template_name: str, page: str, **extra: Any) -> HttpResponse:
    project, role = _project_for(request, project_id)
    config = _config(
        request,
        project={"id": project.pk, "name": project.name, "role": role, "template": project.template.slug},
        **extra,
    )
    return render(request, template_name, {"project": project, "role": role, "page": page, "config": config})


@login_required
def worklist_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _project_page(request, project_id, "annotator_ui/worklist.html", "worklist")


@login_required
def case_page(request: HttpRequest, project_id: int, case_id: int) -> HttpResponse:
    project, _ = _project_for(request, project_id)
    case = get_object_or_404(Case, pk=case_id, project=project)
    presets = [{"id": k, "center": c, "width": w} for k, (c, w) in WINDOW_PRESETS.items()]
    return _project_page(
        request,
        project_id,
        "annotator_ui/case.html",
        "case",
        case={
            "id": case.pk,
            "name": case.name,
            "dicom": case.original_format == "dicom",
            "has_pseudo": PseudoLabel.objects.filter(case=case).exclude(soft_map="").exists(),
        },
        report_template={"fields": project.template.fields, "pattern": project.template.pattern},
        window_presets=presets,
    )


@login_required
def jobs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _project_page(request, project_id, "annotator_ui/jobs.html", "jobs")


@login_required
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _project_page(request, project_id, "annotator_ui/export.html", "export")


def _hounsfield(data: bytes) -> np.ndarray:
    """Modality-LUT values (HU for CT) of a DICOM file's displayed frame, as float32 (middle frame if several)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[len(pixels) // 2]
    if pixels.ndim != 2:
        raise ValueError("not a single-channel image")
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)


@login_required
@require_GET
def case_hu(request: HttpRequest, case_id: int) -> HttpResponse:
    """``GET /cases/<id>/hu/``: a DICOM case's values as ``<u32 width><u32 height><float32 LE pixels>``.

    Used only by the editor's window/level presets; 404 for non-DICOM cases and for non-members.
    """
    case = get_object_or_404(Case.objects.select_related("project"), pk=case_id)
    _project_for(request, case.project_id)
    if case.original_format != "dicom" or not case.original:
        raise Http404("not a DICOM case")
    with case.original.open("rb") as fh:
        data = fh.read()
    try:
        values = _hounsfield(data)
    except Exception as exc:  # a case whose original cannot be decoded again has nothing to window
        raise Http404(f"cannot decode the DICOM original: {exc}") from None
    height, width = values.shape
    body = struct.pack("<II", width, height) + values.astype("<f4").tobytes()
    response = HttpResponse(body, content_type="application/octet-stream")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _case_for(request: HttpRequest, case_id: int) -> Case:
    case = get_object_or_404(Case.objects.select_related("project"), pk=case_id)
    _project_for(request, case.project_id)
    return case


def _json_error(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


@login_required
@require_GET
def case_pseudo_png(request: HttpRequest, case_id: int) -> HttpResponse:
    """``GET /cases/<id>/pseudo.png``: the case's EPI pseudo-label soft map (uint8 PNG, p*255); 404 when none."""
    case = _case_for(request, case_id)
    pseudo = PseudoLabel.objects.filter(case=case).first()
    if pseudo is None or not pseudo.soft_map:
        raise Http404("no pseudo-label for this case")
    response = FileResponse(pseudo.soft_map.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, no-cache"
    return response


@login_required
@require_POST
def case_propose(request: HttpRequest, case_id: int) -> JsonResponse:
    """``POST /cases/<id>/propose/``: queue a fresh proposal with the active model and the case's current report.

    Answers the job (202) to follow on ``/ws/jobs/<id>/``; 409 ``no_active_model`` when the project has no model.
    A proposal still pending is reused (it reads the newest report when it runs).
    """
    from server.workers.progress import job_snapshot
    from server.workers.services import proposal_job_request

    case = _case_for(request, case_id)
    job = proposal_job_request(case_id=case.pk, reason="requested")
    if job is None:
        return _json_error(
            "no_active_model", "This project has no active model yet: accept some cases and train one first.", 409
        )
    return JsonResponse(job_snapshot(job), status=202)
