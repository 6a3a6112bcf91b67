"""Fixtures for the studio tests: an owner (project admin), a collaborator (annotator) and an outsider, API
clients authenticated with tokens, media in a temporary folder, and small real images."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from PIL import Image
from rest_framework.test import APIClient

from server.core.models import Role
from server.studio.models import Project
from server.studio.services.cases import case_create
from server.studio.services.projects import member_set, project_create


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast users


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def gray_image(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 255, size=(height, width), dtype=np.uint8))


def mask_png(width: int = 64, height: int = 48, box: tuple[int, int, int, int] = (10, 10, 30, 20)) -> bytes:
    m = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return png_bytes(m)


@dataclass
class People:
    owner: object
    collaborator: object
    outsider: object
    project: Project

    def client(self, user) -> APIClient:
        client = APIClient()
        _, token = AuthToken.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client


@pytest.fixture
def people(db) -> People:
    User = get_user_model()
    owner = User.objects.create_user("owner", password="owner-pass-123")
    collaborator = User.objects.create_user("collab", password="collab-pass-123")
    outsider = User.objects.create_user("outsider", password="outsider-pass-123")
    project = project_create(user=owner, name="Chest", template="lung-infection")
    member_set(project=project, user=owner, member=collaborator.username, role=Role.ANNOTATOR)
    return People(owner=owner, collaborator=collaborator, outsider=outsider, project=project)


@pytest.fixture
def owner_client(people) -> APIClient:
    return people.client(people.owner)


@pytest.fixture
def collab_client(people) -> APIClient:
    return people.client(people.collaborator)


@pytest.fixture
def outsider_client(people) -> APIClient:
    return people.client(people.outsider)


@pytest.fixture
def case(people):
    return case_create(
        project=people.project,
        user=people.owner,
        data=gray_image(),
        filename="scan.png",
        report_text="Unilateral pulmonary infection, one infected area, lower right lung.",
    )
