"""REST API for the PACS: search (QIDO-RS), import (WADO-RS) into a project, SEG download and store (STOW-RS).

Searching and importing need the reviewer role in the project: search results show patient identifiers from the
PACS (they are shown, never stored). Every PACS failure answers 502 (409 when no PACS is connected) with
``{"error", "detail"}`` saying what to check.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from server.jobs.progress import job_snapshot
from server.studio import dicomweb, selectors
from server.studio import serializers as s
from server.studio.apis import ERROR, ERRORS, _clean, _header_safe, _q
from server.studio.services import pacs as pacs_services
from server.studio.services import pacs_jobs

PACS_ERRORS = {**ERRORS, 409: ERROR, 502: ERROR}


class PacsStatusApi(APIView):
    @extend_schema(responses={200: s.PacsStatusOut})
    def get(self, request):
        return Response(s.PacsStatusOut(pacs_services.pacs_status()).data)


class PacsStudyListApi(APIView):
    @extend_schema(
        operation_id="pacs_studies_search",
        parameters=[s.PacsStudySearchIn],
        responses={200: s.PacsStudyOut(many=True), **PACS_ERRORS},
    )
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.PacsStudySearchIn(data=request.query_params)
        data.is_valid(raise_exception=True)
        query = dicomweb.StudyQuery(**{k: v for k, v in _clean(data.validated_data).items() if v not in (None, "")})
        hits = pacs_services.pacs_study_search(project=project, user=request.user, query=query)
        return Response(s.PacsStudyOut(hits, many=True).data)


class PacsStudyDetailApi(APIView):
    @extend_schema(operation_id="pacs_study_series", responses={200: s.PacsSeriesOut(many=True), **PACS_ERRORS})
    def get(self, request, project_id: int, study_uid: str):
        project = selectors.project_get(user=request.user, project_id=project_id)
        series = pacs_services.pacs_study_get(project=project, user=request.user, study_uid=study_uid)
        return Response(s.PacsSeriesOut(series, many=True).data)


class PacsImportApi(APIView):
    @extend_schema(request=s.PacsImportIn, responses={201: OpenApiTypes.OBJECT, **PACS_ERRORS})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.PacsImportIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = pacs_services.pacs_import(project=project, user=request.user, **_clean(data.validated_data))
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class PacsStoreManyApi(APIView):
    @extend_schema(request=s.PacsStoreManyIn, responses={201: OpenApiTypes.OBJECT, **PACS_ERRORS})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = s.PacsStoreManyIn(data=request.data)
        data.is_valid(raise_exception=True)
        job = pacs_jobs.pacs_store_request(
            project=project, user=request.user, case_ids=data.validated_data.get("cases")
        )
        return Response(job_snapshot(job), status=status.HTTP_201_CREATED)


class CaseSegApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("mask", int, description="an accepted mask version id (default: the latest)")],
        responses={(200, "application/dicom"): OpenApiTypes.BINARY, **PACS_ERRORS},
    )
    def get(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        mask = pacs_services.accepted_mask(case=case, mask_id=_q(request, "mask"))
        data = pacs_services.seg_download(case=case, mask=mask)
        response = HttpResponse(data, content_type="application/dicom")
        stem = case.name.rsplit(".", 1)[0]
        response["Content-Disposition"] = f'attachment; filename="{_header_safe(stem)}-v{mask.version}.seg.dcm"'
        return response


class CaseSegStoreApi(APIView):
    @extend_schema(request=None, responses={201: s.PacsSegStoreOut, **PACS_ERRORS})
    def post(self, request, case_id: int):
        case = selectors.case_get(user=request.user, case_id=case_id)
        record = pacs_services.seg_store_now(case=case, user=request.user, mask_id=request.data.get("mask"))
        return Response(s.PacsSegStoreOut(record).data, status=status.HTTP_201_CREATED)
