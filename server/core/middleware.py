"""Request hygiene that must run before Django's own middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class DropMalformedSessionCookie:
    """Ignore a session cookie holding control characters instead of letting the lookup fail with a 500.

    PostgreSQL refuses NUL bytes in text, so a forged ``sessionid`` containing one would make the session
    query raise on every endpoint. Such a cookie can never name a real session: treat it as absent.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = settings.SESSION_COOKIE_NAME
        value = request.COOKIES.get(name)
        if value is not None and (not value.isascii() or not value.isprintable()):
            del request.COOKIES[name]
        return self.get_response(request)
