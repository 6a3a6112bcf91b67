"""REST API: parse, call one service or selector, serialize. Non-members get 404 everywhere, members without the
needed role 403 (``server/core/access.py``); every error has the one shape of ``server/core/errors.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from server.core.errors import ServiceError
from server.core.models import Role
from server.jobs import selectors as job_selectors
from server.jobs.progress import job_snapshot
from server.studio import exports, imaging, selectors
from server.studio import serializers as s
from server.studio.models import CaseState
from server.studio.services import cases, lvit, masks, projects, registry, training
from server.studio.services.exports import FORMATS, dataset_export
from server.studio.services.jobs import project_job_cancel

ERROR = inline_serializer("Error", {"error": serializers.CharField(), "detail": serializers.JSONField()})
ERRORS = {400: ERROR, 403: ERROR, 404: ERROR}


class _NoFormatOverride(DefaultContentNegotiation):
    """``?format=`` selects the export format here, not a DRF renderer."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


def _paginate(view: APIView, request, qs, serializer_class) -> Response:
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _upload_bytes(upload) -> bytes:
    limit = imaging.max_bytes()
    if upload.size is not None and upload.size > limit:
        raise imaging.ImageError(
            f"{upload.name!r} has {upload.size} bytes, more than the limit of {limit}", code="file_too_large"
        )
    return upload.read()


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _q(request, name: str) -> str | None:
    """A query parameter; NUL characters (which PostgreSQL cannot store or compare) are a 400, not a 500."""
    value = request.query_params.get(name)
    if value is not None and _has_nul(value):
        raise ServiceError({name: "must not contain NUL characters"})
    return value


def _clean(validated: dict) -> dict:
    for key, value in validated.items():
        if _has_nul(value):
            raise ServiceError({key: "must not contain NUL characters"})
    return validated


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull a sync generator one chunk at a time in the sync thread (DB access stays there)."""
    step = sync_to_async(lambda: next(chunks, None), thread_sensitive=True)
    try:
        while (chunk := await step()) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def _stream(request, chunks: Iterator[bytes], content_type: str, filename: str) -> StreamingHttpResponse:
    """A streamed download. Under ASGI the content must be an async iterator: Django would otherwise collect a
    sync iterator into a list first (all of the export in memory)."""
    is_asgi = isinstance(getattr(request, "_request", request), ASGIRequest)
    response = StreamingHttpResponse(_async_chunks(chunks) if is_asgi else chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _params(data: object) -> dict:
    """A JSON object or form fields as a plain dict (a form field sent once is its value, not a list)."""
    if hasattr(data, "dict"):
        data = data.dict()
    if not isinstance(data, dict):
        raise ServiceError("the body must be a JSON object")
    if _has_nul(data):
        raise ServiceError("must not contain NUL characters")
    return data


def _bool(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


def _header_safe(name: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)[:200] or "file"


def _file_response(field, content_type: str, filename: str) -> FileResponse:
    try:
        handle = field.open("rb")
    except (FileNotFoundError, OSError):
        raise ServiceError(
            f"the stored file {field.name!r} is missing from storage", code="file_missing", status_code=404
        ) from None
    response = FileResponse(handle, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{_header_safe(filename)}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


PAGINATION = [
    OpenApiParameter("limit", int, description="page size (default 50)"),
    OpenApiParameter("offset", int),
]


def _page_of(serializer_class: type, name: str) -> serializers.Serializer:
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.CharField(allow_null=True),
            "previous": serializers.CharField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )


# --- Templates and projects ----------------------------------------------------------------------------------------


class TemplateListApi(APIView):
    @extend_schema(responses={200: s.TemplateOut(many=True)})
    def get(self, request):
        return Response(s.TemplateOut(selectors.template_list(), many=True).data)


class ProjectListApi(APIView):
    @extend_schema(
        operation_id="projects_list", parameters=PAGINATION, responses={200: _page_of(s.ProjectOut, "ProjectPage")}
    )
    def get(self, request):
        return _paginate(self, request, selectors.project_list(user=request.user), s.ProjectOut)

    @extend_schema(request=s.ProjectIn, responses={201: s.ProjectOut, 400: ERROR, 409: ERROR})
    def post(self, request):
        data = s.ProjectIn(data=request.data)
        data.is_valid(raise_exception=True)
        project = projects.project_create(user=request.user, **_clean(data.validated_data))
        project = selectors.project_get(user=request.user, project_id=project.pk)
        return Response(s.ProjectOut(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses={200: s.ProjectOut, **ERRORS})
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.ProjectOut(project).data
        data["stats"] = selectors.project_stats(project=project)
        return Response(data)

    @extend_schema(request=s.ProjectPatchIn, responses={200: s.ProjectOut, **ERRORS})
    def patch(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.ProjectPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        project = projects.project_update(project=project, user=request.user, **_clean(data.validated_data))
        return Response(s.ProjectOut(project).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        projects.project_delete(project=project, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListApi(APIView):
    @extend_schema(responses={200: s.MemberOut(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(s.MemberOut(selectors.member_list(project=project), many=True).data)

    @extend_schema(request=s.MemberIn, responses={201: s.MemberOut, **ERRORS})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = projects.member_set(
            project=project,
            user=request.user,
            member=_clean(data.validated_data)["user"],
            role=_clean(data.validated_data)["role"],
        )
        return Response(s.MemberOut(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    @extend_schema(request=s.MemberRoleIn, responses={200: s.MemberOut, **ERRORS})
    def put(self, request, project_id: int, user_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.MemberRoleIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = projects.member_set(
            project=project, user=request.user, member=user_id, role=_clean(data.validated_data)["role"]
        )
        return Response(s.MemberOut(membership).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id: int, user_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        projects.member_remove(project=project, user=request.user, member=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Cases ---------------------------------------------------------------------------------------------------------


class CaseListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, description=f"comma-separated: {', '.join(CaseState.values)}"),
            OpenApiParameter("split", str, description="comma-separated: train, val, test"),
            OpenApiParameter("assignee", str, description="user id, 'me' or 'none'"),
            OpenApiParameter("search", str, description="name contains"),
            OpenApiParameter("ordering", str, description="e.g. -al_score, name, -updated_at"),
            *PAGINATION,
        ],
        responses={200: _page_of(s.CaseOut, "CasePage"), **ERRORS},
    )
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        qs = selectors.case_list(
            project=project,
            user=request.user,
            state=_q(request, "state"),
            split=_q(request, "split"),
            assignee=_q(request, "assignee"),
            search=_q(request, "search"),
            ordering=_q(request, "ordering"),
        )
        return _paginate(self, request, qs, s.CaseOut)

    @extend_schema(
        request={"multipart/form-data": s.CaseUploadIn},
        responses={201: s.CaseOut(many=True), 400: ERROR, 404: ERROR, 409: ERROR},
        description="Upload one or more images (repeat `image`) or a zip of images. All-or-nothing: every file is "
        "checked first; a 400 lists each bad file (`detail.errors`: `[{file, error}]`) and nothing is stored. "
        "`report` (sentence) or `fields` apply to a single image; `reports` (CSV/XLSX: Image, Description) to many.",
    )
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.CaseUploadIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = _clean(data.validated_data)
        table = v.get("reports")
        created = cases.case_upload(
            project=project,
            user=request.user,
            files=[(upload.name, _upload_bytes(upload)) for upload in request.FILES.getlist("image")],
            split=v.get("split"),
            report_text=v.get("report"),
            fields=v.get("fields"),
            window=v.get("window"),
            report_table=(table.name, _upload_bytes(table)) if table is not None else None,
        )
        return Response(s.CaseOut(created, many=True).data, status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    @extend_schema(responses={200: s.CaseDetailOut, **ERRORS})
    def get(self, request, case_id: int):
        return Response(s.CaseDetailOut(selectors.case_get(user=request.user, case_id=case_id)).data)

    @extend_schema(request=s.CasePatchIn, responses={200: s.CaseDetailOut, **ERRORS})
    def patch(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        data = s.CasePatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        cases.case_update(case=case, user=request.user, **_clean(data.validated_data))
        return Response(s.CaseDetailOut(selectors.case_get(user=request.user, case_id=case_id)).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        cases.case_delete(case=case, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CaseImageApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("original", bool, description="1: the uploaded (de-identified) original"),
            OpenApiParameter("size", int, description="a thumbnail fitting size x size pixels (16..512)"),
        ],
        responses={(200, "image/png"): OpenApiTypes.BINARY, **ERRORS},
    )
    def get(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        size = _q(request, "size")
        if size is not None:
            if not size.isdigit():
                raise ServiceError({"size": "must be an integer from 16 to 512"})
            response = HttpResponse(selectors.case_thumbnail(case=case, size=int(size)), content_type="image/png")
            response["Cache-Control"] = "private, max-age=86400"  # a case's image never changes
            return response
        if _bool(_q(request, "original")) and case.original:
            content_type = {
                "dicom": "application/dicom",
                "jpeg": "image/jpeg",
                "tiff": "image/tiff",
                "bmp": "image/bmp",
            }.get(case.original_format, "image/png")
            return _file_response(case.original, content_type, case.original_name or case.name)
        return _file_response(case.image, "image/png", case.name)


class CaseReportApi(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "CaseReports", {"current": s.ReportOut(allow_null=True), "history": s.ReportOut(many=True)}
            ),
            **ERRORS,
        }
    )
    def get(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        history = case.reports.select_related("author").order_by("version")
        return Response(
            {
                "current": s.ReportOut(case.report).data if case.report else None,
                "history": s.ReportOut(history, many=True).data,
            }
        )

    @extend_schema(request=s.ReportIn, responses={200: s.ReportOut, 409: ERROR, **ERRORS})
    def put(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        data = s.ReportIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = _clean(data.validated_data)
        report = cases.report_update(
            case=case, user=request.user, fields=v.get("fields"), text=v.get("text"), base_version=v.get("base_version")
        )
        return Response(s.ReportOut(report).data)


class CaseMaskListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses={200: s.MaskOut(many=True), **ERRORS})
    def get(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        return Response(s.MaskOut(selectors.mask_history(case=case), many=True).data)

    @extend_schema(
        request={"multipart/form-data": s.MaskIn},
        responses={201: s.MaskOut, 409: ERROR, **ERRORS},
        description="Save a correction on top of `base_version` (the head version you loaded; omit when the case "
        "had no mask). A stale base answers 409; your upload is kept as a non-current version named in the reply.",
    )
    def post(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        data = s.MaskIn(data=request.data)
        data.is_valid(raise_exception=True)
        mv = masks.mask_save(
            case=case,
            user=request.user,
            png_bytes=_upload_bytes(_clean(data.validated_data)["mask"]),
            base_version=_clean(data.validated_data).get("base_version"),
        )
        return Response(s.MaskOut(mv).data, status=status.HTTP_201_CREATED)


class CaseAcceptApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request={"multipart/form-data": s.AcceptIn, "application/json": s.AcceptIn},
        responses={200: s.MaskOut, 409: ERROR, **ERRORS},
    )
    def post(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        data = s.AcceptIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = _clean(data.validated_data)
        upload = v.get("mask")
        mv = masks.mask_accept(
            case=case,
            user=request.user,
            png_bytes=_upload_bytes(upload) if upload is not None else None,
            base_version=v.get("base_version"),
            without_report=v["without_report"],
        )
        return Response(s.MaskOut(mv).data)


class CaseRejectApi(APIView):
    @extend_schema(request=s.RejectIn, responses={200: s.CaseOut, 409: ERROR, **ERRORS})
    def post(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        data = s.RejectIn(data=request.data)
        data.is_valid(raise_exception=True)
        case = masks.mask_reject(case=case, user=request.user, reason=_clean(data.validated_data)["reason"])
        return Response(s.CaseOut(case).data)


class CaseOpenApi(APIView):
    @extend_schema(request=None, responses={200: s.CaseOpenOut, **ERRORS})
    def post(self, request, case_id: int):
        """The editor reports that the caller opened the case; the first open (kept) starts "seconds to accept"."""
        case = selectors.case_get(user=request.user, case_id=case_id)
        opened = masks.case_open_record(case=case, user=request.user)
        return Response(s.CaseOpenOut({"case": case.pk, "opened_at": opened.opened_at}).data)


class CaseReleaseApi(APIView):
    @extend_schema(request=None, responses={200: s.CaseOut, **ERRORS})
    def post(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        return Response(s.CaseOut(cases.case_release(case=case, user=request.user)).data)


class MaskPngApi(APIView):
    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, mask_id: int):
        mask = selectors.mask_get(user=request.user, mask_id=mask_id)
        return _file_response(mask.png, "image/png", f"mask-{mask.case_id}-v{mask.version}.png")


class MaskRestoreApi(APIView):
    @extend_schema(
        request=s.MaskRestoreIn,
        responses={201: s.MaskOut, 409: ERROR, **ERRORS},
        description="Restore this version as a new version on top of the head (`base_version`: the head you "
        "loaded). Nothing is overwritten; the new version's stats name `restored_from`.",
    )
    def post(self, request, mask_id: int):
        mask = selectors.mask_get(user=request.user, mask_id=mask_id)
        data = s.MaskRestoreIn(data=request.data)
        data.is_valid(raise_exception=True)
        mv = masks.mask_restore(mask=mask, user=request.user, base_version=data.validated_data.get("base_version"))
        return Response(s.MaskOut(mv).data, status=status.HTTP_201_CREATED)


class MaskProbabilitiesApi(APIView):
    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, mask_id: int):
        mask = selectors.mask_get(user=request.user, mask_id=mask_id)
        if not mask.probabilities:
            raise ServiceError("this mask version has no probability map", code="not_found", status_code=404)
        return _file_response(mask.probabilities, "image/png", f"prob-{mask.case_id}-v{mask.version}.png")


class WorklistNextApi(APIView):
    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter("strategy", str, enum=list(cases.STRATEGIES), description="default uncertainty"),
            OpenApiParameter("split", str, enum=["train", "val", "test"]),
        ],
        responses={200: s.CaseDetailOut, 204: OpenApiResponse(description="nothing left to do"), **ERRORS},
    )
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        case = cases.worklist_next(
            project=project,
            user=request.user,
            strategy=_q(request, "strategy") or "uncertainty",
            split=_q(request, "split"),
        )
        if case is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.CaseDetailOut(selectors.case_get(user=request.user, case_id=case.pk)).data)


# --- Import, export, metrics ---------------------------------------------------------------------------------------


class ImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": s.ImportIn},
        responses={202: s.JobOut, 409: ERROR, **ERRORS},
        description="Queue the import of a zip in the LViT layout (project admins). Answers the job (202): follow it "
        "on `/ws/jobs/<id>/` or `GET /api/jobs/<id>/`; `progress` is `{phase: validating|storing, done, total}`. "
        "On success `result` holds the counts (`cases`, `labeled`, `reports`, `structured_reports`, `splits`, "
        "`warnings`); on failure nothing is imported and `result.error` is `{code, detail}` with "
        "`detail.errors`: every bad file, `[{file, error}]`.",
    )
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = s.ImportIn(data=request.data)
        data.is_valid(raise_exception=True)
        job = lvit.lvit_import_start(
            project=project, user=request.user, data=_upload_bytes(_clean(data.validated_data)["archive"])
        )
        return Response(job_snapshot(job), status=status.HTTP_202_ACCEPTED)


class ExportApi(APIView):
    content_negotiation_class = _NoFormatOverride

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), description="default lvit"),
            OpenApiParameter("split", str, description="comma-separated splits"),
            OpenApiParameter("state", str, description="comma-separated states"),
            OpenApiParameter("accepted", bool, description="only cases with an accepted mask"),
            OpenApiParameter(
                "text",
                str,
                enum=["imported", "xlsx", "csv"],
                description="LViT layout: each split's reports file (<Split>_text.xlsx or .csv); default: as imported",
            ),
        ],
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
            **ERRORS,
        },
    )
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        export = dataset_export(
            project=project,
            user=request.user,
            fmt=_q(request, "format") or "lvit",
            split=_q(request, "split"),
            state=_q(request, "state"),
            accepted_only=_bool(_q(request, "accepted")),
            text=_q(request, "text"),
            filters=dict(request.query_params.items()),
        )
        return _stream(request, export.chunks, export.content_type, export.filename)


class MetricsApi(APIView):
    content_negotiation_class = _NoFormatOverride

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=["json", "csv", "effort-csv"],
                description="default json; csv: one row per model version; effort-csv: one row per accepted case",
            )
        ],
        responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/csv"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        fmt = _q(request, "format") or "json"
        if fmt not in ("json", "csv", "effort-csv"):
            raise ServiceError({"format": f"unknown format {fmt!r}; use json, csv or effort-csv"})
        if fmt == "effort-csv":
            response = HttpResponse(
                exports.effort_csv(selectors.effort_cases(project=project)), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = 'attachment; filename="effort.csv"'
            return response
        effort = selectors.effort_by_model_version(project=project)
        rows = exports.metrics_rows(project, effort)
        if fmt == "csv":
            response = HttpResponse(exports.metrics_csv(rows), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="metrics.csv"'
            return response
        body = {
            "project": project.pk,
            "models": rows,
            "effort": {
                "all": selectors.effort_summary(selectors.effort_cases(project=project)),
                "without_model": effort.get(None),
            },
        }
        return HttpResponse(json.dumps(body), content_type="application/json")


# --- Models, jobs, audit -------------------------------------------------------------------------------------------


class ModelListApi(APIView):
    @extend_schema(responses={200: s.ModelOut(many=True), **ERRORS})
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(s.ModelOut(selectors.model_list(project=project), many=True).data)


class ModelActivateApi(APIView):
    @extend_schema(request=None, responses={200: s.ModelOut, **ERRORS})
    def post(self, request, model_id: int):
        mv = selectors.model_version_get(user=request.user, model_id=model_id)
        return Response(s.ModelOut(registry.model_version_activate(model_version=mv, user=request.user)).data)


class JobListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("kind", str), OpenApiParameter("status", str), *PAGINATION],
        responses={200: _page_of(s.JobOut, "JobPage"), **ERRORS},
    )
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        qs = job_selectors.job_list(project_id=project.pk, kind=_q(request, "kind"), status=_q(request, "status"))
        return _paginate(self, request, qs, s.JobOut)


class JobDetailApi(APIView):
    @extend_schema(responses={200: s.JobOut, **ERRORS})
    def get(self, request, job_id: int):
        return Response(s.JobOut(job_selectors.job_get(user=request.user, job_id=job_id)).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses={200: s.JobOut, 409: ERROR, **ERRORS})
    def post(self, request, job_id: int):
        """Cancel a pending or running job (project admins); 409 ``job_finished`` once it finished."""
        job = job_selectors.job_get(user=request.user, job_id=job_id)
        return Response(s.JobOut(project_job_cancel(job=job, user=request.user)).data)


# --- Training ------------------------------------------------------------------------------------------------------


class TrainingJobsApi(APIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(request=s.TrainingParamsIn, responses={201: s.JobOut, 409: ERROR, **ERRORS})
    def post(self, request, project_id: int):
        """Start a retraining round (admins). 400 ``not_enough_labels`` says how many accepted cases are missing."""
        project = selectors.project_get(user=request.user, project_id=project_id, role=Role.ADMIN)
        job = training.training_job_create(project=project, params=_params(request.data), actor=request.user)
        return Response(job_snapshot(job), status=status.HTTP_201_CREATED)


class TrainingReadinessApi(APIView):
    @extend_schema(responses={200: s.TrainingReadinessOut, **ERRORS})
    def get(self, request, project_id: int):
        """Whether a training round can start, and how many accepted cases are missing for the first model."""
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(selectors.training_readiness(project=project))


class TrainingPolicyApi(APIView):
    @extend_schema(responses={200: s.TrainingPolicyOut, **ERRORS})
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(s.TrainingPolicyOut(selectors.training_policy_get(project_id=project.pk)).data)

    @extend_schema(request=s.TrainingPolicyIn, responses={200: s.TrainingPolicyOut, **ERRORS})
    def put(self, request, project_id: int):
        """How retraining rounds end: ``auto_if_better`` promotes a candidate that beats the active model."""
        project = selectors.project_get(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = s.TrainingPolicyIn(data=request.data)
        data.is_valid(raise_exception=True)
        policy = training.training_policy_set(project=project, user=request.user, **data.validated_data)
        return Response(s.TrainingPolicyOut(policy).data)


class AuditListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("action", str, description="comma-separated, e.g. mask.accepted"), *PAGINATION],
        responses={200: _page_of(s.AuditOut, "AuditPage"), **ERRORS},
    )
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return _paginate(self, request, selectors.audit_list(project=project, action=_q(request, "action")), s.AuditOut)


class PreferencesApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request, project_id: int):
        """The caller's own editor preferences in this project (display, brush, opacity, layers)."""
        return Response(selectors.member_preferences(user=request.user, project_id=project_id))

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def put(self, request, project_id: int):
        """Replace the caller's editor preferences in this project (a JSON object up to 16 KiB)."""
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = _clean(request.data) if isinstance(request.data, dict) else request.data
        prefs = projects.member_preferences_set(project=project, user=request.user, preferences=data)
        return Response(prefs)


__all__ = [name for name in dir() if name.endswith("Api")]
