"""REST API of the training loop: start a retraining round (the one way to start one), readiness (cold start),
promotion policy, and cancelling a job (it goes through the one job lifecycle in ``services.py``).

Reading and listing jobs, listing and activating model versions are the studio's endpoints
(``server/studio/apis.py``); the workers react to activation through the studio's signals.

Outsiders get 404 (a project's existence is not revealed); members who lack the admin role get 403 on
writes. Every error has the one shape of ``server/core/errors.py``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from server.core.access import require_role
from server.core.models import Role
from server.studio import selectors
from server.studio import serializers as studio_serializers
from server.studio.apis import ERROR, ERRORS
from server.studio.models import JobKind, JobStatus, Project
from server.workers import conf
from server.workers.models import TrainingPolicy
from server.workers.progress import job_snapshot
from server.workers.services import job_cancel, training_job_create, training_readiness


def _admin_project(user: Any, project_id: int) -> Project:
    project = selectors.project_get(user=user, project_id=project_id)
    require_role(project=project, user=user, role=Role.ADMIN)
    return project


# --------------------------------------------------------------------------- serializers


class TrainingJobInput(serializers.Serializer):
    epochs = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    mode = serializers.ChoiceField(choices=conf.TRAINING_MODES, required=False)
    img_size = serializers.IntegerField(required=False, min_value=16, max_value=1024)
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=256)
    init = serializers.ChoiceField(choices=["finetune", "scratch"], required=False)
    promotion = serializers.ChoiceField(choices=conf.PROMOTION_POLICIES, required=False)
    lr = serializers.FloatField(required=False, min_value=1e-7, max_value=0.5)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)


class JobOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(allow_null=True)
    case = serializers.IntegerField(allow_null=True)
    kind = serializers.ChoiceField(choices=JobKind.choices)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.DictField()
    message = serializers.CharField()
    params = serializers.DictField()
    result = serializers.DictField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)


class ModelVersionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    number = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    config = serializers.DictField()
    metrics = serializers.DictField()
    parent = serializers.IntegerField(source="parent_id", allow_null=True)
    training_job = serializers.IntegerField(source="training_job_id", allow_null=True)
    created_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)


class ReadinessOutput(serializers.Serializer):
    ready = serializers.BooleanField()
    accepted = serializers.IntegerField()
    needed = serializers.IntegerField()
    missing = serializers.IntegerField()
    has_active_model = serializers.BooleanField()


class PolicySerializer(serializers.Serializer):
    promotion = serializers.ChoiceField(choices=conf.PROMOTION_POLICIES)
    min_improvement = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)


# --------------------------------------------------------------------------- views


class TrainingJobsApi(APIView):
    @extend_schema(request=TrainingJobInput, responses={201: JobOutput})
    def post(self, request: Request, project_id: int) -> Response:
        """Start a retraining round (admins). 400 ``not_enough_labels`` says how many accepted cases are missing."""
        project = _admin_project(request.user, project_id)
        data = TrainingJobInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = training_job_create(project=project, params=dict(data.validated_data), actor=request.user)
        return Response(job_snapshot(job), status=status.HTTP_201_CREATED)


class TrainingReadinessApi(APIView):
    @extend_schema(responses={200: ReadinessOutput})
    def get(self, request: Request, project_id: int) -> Response:
        """Whether a training round can start, and how many accepted cases are missing for the first model."""
        return Response(training_readiness(selectors.project_get(user=request.user, project_id=project_id)))


class TrainingPolicyApi(APIView):
    @extend_schema(responses={200: PolicySerializer})
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        policy = TrainingPolicy.objects.filter(project=project).first() or TrainingPolicy(project=project)
        return Response({"promotion": policy.promotion, "min_improvement": policy.min_improvement})

    @extend_schema(request=PolicySerializer, responses={200: PolicySerializer})
    def put(self, request: Request, project_id: int) -> Response:
        """How retraining rounds end: ``auto_if_better`` promotes a candidate that beats the active model."""
        project = _admin_project(request.user, project_id)
        data = PolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy, _ = TrainingPolicy.objects.update_or_create(project=project, defaults=dict(data.validated_data))
        return Response({"promotion": policy.promotion, "min_improvement": policy.min_improvement})


class JobCancelApi(APIView):
    @extend_schema(request=None, responses={200: studio_serializers.JobOut, 409: ERROR, **ERRORS})
    def post(self, request: Request, job_id: int) -> Response:
        """Cancel a pending or running job (project admins); 409 ``job_finished`` once it finished."""
        job = selectors.job_get(user=request.user, job_id=job_id)
        return Response(studio_serializers.JobOut(job_cancel(job=job, user=request.user)).data)
