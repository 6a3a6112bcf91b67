"""Password guessing (issue 13 item 7): every login path locks out per address and per account (django-axes), and a
client cannot dodge that with its own X-Forwarded-For; forwarded headers count only from configured proxies."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

PASSWORD = "a correct horse battery"
LIMIT = 3


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def victim(db):
    return get_user_model().objects.create_user("victim", password=PASSWORD, is_staff=True, is_superuser=True)


def _token(client: APIClient, username: str, password: str, addr: str = "203.0.113.7", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": addr}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json", **extra)


def expect_lockout(statuses: list[int]) -> None:
    """django-axes locks at the failure that reaches the limit: that attempt already answers 429."""
    assert statuses == [400] * (LIMIT - 1) + [429], statuses


def test_token_endpoint_locks_out_despite_rotating_forwarded_headers(victim):
    client = APIClient()
    for n in range(LIMIT - 1):
        r = _token(client, "victim", f"guess-{n}", forwarded=f"198.51.100.{n}")
        assert r.status_code == 400 and r.json()["error"] == "invalid_credentials"
    assert _token(client, "victim", "guess", forwarded="198.51.100.100").status_code == 429
    locked = _token(client, "victim", PASSWORD, forwarded="198.51.100.200")  # even the right password
    assert locked.status_code == 429, locked.content
    assert locked.json()["error"] == "too_many_attempts" and "try again in" in locked.json()["detail"]
    assert "token" not in locked.json()


def test_lockout_is_per_account_across_addresses(victim):
    client = APIClient()
    expect_lockout([_token(client, "victim", f"guess-{n}", addr=f"192.0.2.{n + 1}").status_code for n in range(LIMIT)])
    assert _token(client, "victim", PASSWORD, addr="192.0.2.99").status_code == 429


def test_lockout_is_per_address_across_accounts(victim):
    client = APIClient()
    expect_lockout([_token(client, f"someone{n}", "guess", addr="192.0.2.50").status_code for n in range(LIMIT)])
    assert _token(client, "victim", PASSWORD, addr="192.0.2.50").status_code == 429
    assert _token(client, "victim", PASSWORD, addr="192.0.2.51").status_code == 200  # others are not locked out


def test_success_resets_the_count(victim):
    client = APIClient()
    for _ in range(2):
        for n in range(LIMIT - 1):
            assert _token(client, "victim", f"guess-{n}").status_code == 400
        assert _token(client, "victim", PASSWORD).status_code == 200


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_session_login_pages_lock_out(victim, path):
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post(
            path, {"username": "victim", "password": f"guess-{n}"}, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}"
        ).status_code
        for n in range(LIMIT)
    ]
    assert statuses == [200] * (LIMIT - 1) + [429]  # the form again with its error, then the lockout
    r = client.post(path, {"username": "victim", "password": PASSWORD})
    assert r.status_code == 429
    assert "_auth_user_id" not in client.session


def test_forwarded_for_counts_only_from_trusted_proxies(settings, rf):
    from server.core.security import client_ip

    settings.LVIT_TRUSTED_PROXIES = []
    direct = rf.get("/", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="1.1.1.1")
    assert client_ip(direct) == "203.0.113.5"
    settings.LVIT_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(direct) == "203.0.113.5"  # not from a proxy: the header is the client's own words
    proxied = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.1, 198.51.100.4")
    assert client_ip(proxied) == "198.51.100.4"  # the address the proxy saw, not what the client prepended
    chain = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.4, 10.0.0.9")
    assert client_ip(chain) == "198.51.100.4"
    junk = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert client_ip(junk) == "10.0.0.2"


def test_trusted_proxy_lockout_uses_the_forwarded_client(settings, victim):
    settings.LVIT_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = APIClient()
    expect_lockout(
        [
            _token(client, f"other{n}", "guess", addr="10.0.0.2", forwarded="198.51.100.4").status_code
            for n in range(LIMIT)
        ]
    )
    assert _token(client, "victim", PASSWORD, addr="10.0.0.2", forwarded="198.51.100.4").status_code == 429
    # another client behind the same proxy is not locked out
    assert _token(client, "victim", PASSWORD, addr="10.0.0.2", forwarded="198.51.100.5").status_code == 200


def test_a_bad_trusted_proxy_entry_stops_the_start(monkeypatch):
    from server.config import ConfigError, cidr_list

    monkeypatch.setenv("LVIT_TRUSTED_PROXIES", "10.0.0.0/8, nginx")
    with pytest.raises(ConfigError, match="'nginx' is not an IP address"):
        cidr_list("LVIT_TRUSTED_PROXIES")
    monkeypatch.setenv("LVIT_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    assert cidr_list("LVIT_TRUSTED_PROXIES") == ["10.0.0.0/8", "::1"]
