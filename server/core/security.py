"""Who is calling and how often they may try: the client address behind trusted proxies, login lockout answers,
throttles keyed on that address, and token rotation when a password changes.

Forwarded headers (``X-Forwarded-For``) are believed only when the direct peer is one of ``LVIT_TRUSTED_PROXIES``
(CIDR list, default none): any client can send the header, so without that check a throttle keyed on it is none.
Login lockout is django-axes (username and address, with a cool-off; ``AXES_*`` settings); API tokens are
django-rest-knox (hashed, expiring, revocable). See docs/security.md.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.throttling import AnonRateThrottle


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.LVIT_TRUSTED_PROXIES)))


def client_ip(request: Any) -> str:
    """The caller's address: ``REMOTE_ADDR``, or, when that is a trusted proxy, the right-most ``X-Forwarded-For``
    entry that is not one (the left part of the header is whatever the client wrote)."""
    meta = getattr(request, "META", {}) or {}
    remote = str(meta.get("REMOTE_ADDR") or "").strip()
    if not remote or not _trusted(remote):
        return remote
    hops = [h.strip() for h in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # a forged, unparsable entry after the trusted proxies: keep the proxy's view
    return hops[0] if hops else remote


class ClientIpThrottleMixin:
    """DRF throttles keyed on :func:`client_ip` (DRF's own ``get_ident`` trusts ``X-Forwarded-For`` from anyone)."""

    def get_ident(self, request: Any) -> str:
        return client_ip(request)


class AnonThrottle(ClientIpThrottleMixin, AnonRateThrottle):
    pass


def lockout_response(request: HttpRequest, response: HttpResponse | None = None, credentials: Any = None, *a, **kw):
    """django-axes' answer to a locked-out login: the JSON error shape on ``/api/``, a plain page elsewhere."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60) if settings.AXES_COOLOFF_TIME else None
    wait = f"try again in {minutes} minutes" if minutes else "ask an administrator to unlock the account"
    detail = f"too many failed logins for this account or address; {wait}"
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "too_many_attempts", "detail": detail}, status=429)
    return HttpResponse(f"<!doctype html><title>Locked</title><p>{detail}.</p>", status=429)


def revoke_tokens_on_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``pre_save`` of the user model: a changed password revokes every API token of the user."""
    fields = kwargs.get("update_fields")
    if not instance.pk or kwargs.get("raw") or (fields is not None and "password" not in fields):
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        from knox.models import AuthToken

        AuthToken.objects.filter(user_id=instance.pk).delete()
