"""Fuzz the studio API from its OpenAPI schema (schemathesis): no input may produce a 5xx.

Path ids are real (owner's project, case, mask, model, job) for even draws and random otherwise, so both the
404 paths and the real objects are exercised. DELETE operations only ever see random ids.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis import GenerationConfig

from server.studio.models import JobKind
from server.studio.services.cases import case_create
from server.studio.services.jobs import project_job_create
from server.studio.services.masks import mask_create_proposal, mask_save
from server.studio.services.registry import model_version_create
from server.wsgi import application
from tests.server.conftest import gray_image, mask_png


def _schema_dict() -> dict:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


@pytest.fixture
def api_schema():
    # Auth comes from our token header; generated session cookies would only probe Django's session backend (a NUL
    # in the sessionid cookie is a 500 in django.contrib.sessions on PostgreSQL: reported to the lead, not ours).
    return schemathesis.from_dict(
        _schema_dict(), app=application, generation_config=GenerationConfig(with_security_parameters=False)
    )


@pytest.fixture
def fuzz_env(people):
    case = case_create(
        project=people.project, user=people.owner, data=gray_image(), filename="fuzz.png", report_text="Hazy."
    )
    mv = mask_save(case=case, user=people.owner, png_bytes=mask_png(), base_version=None)
    probs = np.zeros((case.height, case.width), np.float32)
    mask_create_proposal(case=case, array=probs > 0.5, probabilities=probs, uncertainty=0.1)
    model = model_version_create(project=people.project, checkpoint=b"w", metrics={"dice": 0.1})
    job = project_job_create(kind=JobKind.SCORING, project=people.project)
    _, token = AuthToken.objects.create(user=people.owner)
    # Like Django's test client: keep the test transaction's connection open across WSGI requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {
        "ids": {
            "project_id": people.project.pk,
            "case_id": case.pk,
            "mask_id": mv.pk,
            "model_id": model.pk,
            "job_id": job.pk,
            "user_id": people.collaborator.pk,
        },
        "headers": {"Authorization": f"Token {token}"},
    }
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize(endpoint="^/api/(projects|cases|masks|models|jobs|templates)")
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
@pytest.mark.slow
@pytest.mark.django_db
def test_api_never_answers_5xx(case, fuzz_env):
    if case.path_parameters and case.method.upper() != "DELETE":
        for name, value in list(case.path_parameters.items()):
            if name in fuzz_env["ids"] and isinstance(value, int) and value % 2 == 0:
                case.path_parameters[name] = fuzz_env["ids"][name]
    response = case.call(headers=fuzz_env["headers"])
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.data[:500])
