"""API tokens (issue 13 item 8): revocable (DELETE /api/auth/token/), rotated by a password change, a new one per
login, stored hashed and expiring (django-rest-knox)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordChangeForm
from django.utils import timezone
from rest_framework.test import APIClient

PASSWORD = "a correct horse battery"


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("scripter", password=PASSWORD)


def login(password: str = PASSWORD) -> str:
    r = APIClient().post("/api/auth/token/", {"username": "scripter", "password": password}, format="json")
    assert r.status_code == 200, r.content
    return r.json()["token"]


REFUSED = 403  # DRF answers a bad token 403 while session auth comes first (no WWW-Authenticate challenge)


def status_with(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    r = client.get("/api/projects/")
    if r.status_code != 200:
        assert r.json()["error"] == "authentication_failed", r.json()
    return r.status_code


def test_delete_revokes_the_token_used(user):
    first, second = login(), login()
    assert first != second  # each login gives its own token
    assert status_with(first) == 200 and status_with(second) == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.delete("/api/auth/token/").status_code == 204
    assert status_with(first) == REFUSED
    assert status_with(second) == 200  # the other session of the script is untouched


def test_delete_all_revokes_every_token(user):
    first, second = login(), login()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.delete("/api/auth/token/?all=1").status_code == 204
    assert status_with(first) == REFUSED and status_with(second) == REFUSED


def test_delete_without_a_token_is_refused_in_the_json_shape(user):
    r = APIClient().delete("/api/auth/token/")
    assert r.status_code == 401 and r.json()["error"] == "not_authenticated"


def test_password_change_revokes_tokens(user):
    token = login()
    form = PasswordChangeForm(
        user, {"old_password": PASSWORD, "new_password1": "n3w-s3cret-phrase", "new_password2": "n3w-s3cret-phrase"}
    )
    assert form.is_valid(), form.errors
    form.save()
    assert status_with(token) == REFUSED
    assert status_with(login("n3w-s3cret-phrase")) == 200


def test_saving_a_user_without_a_new_password_keeps_tokens(user):
    token = login()
    user.first_name = "Ada"
    user.save()
    assert status_with(token) == 200


def test_tokens_are_stored_hashed_and_expire(user, settings):
    from knox.models import AuthToken

    token = login()
    row = AuthToken.objects.get(user=user)
    assert token not in row.digest and row.token_key == token[:15]
    assert row.expiry is not None and row.expiry > timezone.now() + timedelta(days=29)  # LVIT_TOKEN_TTL_HOURS
    AuthToken.objects.filter(pk=row.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert status_with(token) == REFUSED
    assert not AuthToken.objects.filter(pk=row.pk).exists()  # knox removes an expired token when it is shown
