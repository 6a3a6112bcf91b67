"""One error shape for the whole API: ``{"error": <code>, "detail": <message or field errors>}``.

Services raise :class:`ServiceError` (or a subclass) with a code and a message that says what to fix;
DRF's own exceptions are mapped to the same shape by :func:`api_exception_handler`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ServiceError(Exception):
    """A request the domain refuses. ``status_code`` picks the HTTP status, ``code`` is machine-readable."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, detail: Any, *, code: str | None = None, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code


class NotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(ServiceError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Conflict(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


def _code_for(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    return getattr(exc, "default_code", "error")


DATABASE_BUSY_RETRY_AFTER = 2  # seconds


def database_busy(exc: Exception) -> bool:
    """SQLite's lock timeout: another write held the database longer than ``LVIT_SQLITE_TIMEOUT``."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


def redis_down(exc: Exception) -> bool:
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError

    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, KombuOperationalError))


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if database_busy(exc):  # the transaction rolled back: nothing of the request was stored
        response = Response(
            {
                "error": "database_busy",
                "detail": "the database is busy with other saves and nothing of this request was stored; "
                "send the same request again",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(DATABASE_BUSY_RETRY_AFTER)
        return response
    if isinstance(exc, ServiceError):
        response = Response({"error": exc.code, "detail": exc.detail}, status=exc.status_code)
        if getattr(exc, "retry_after", None):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if redis_down(exc):  # the cache (throttles) or the broker: a JSON 503, never an HTML 500
        response = Response(
            {
                "error": "redis_unavailable",
                "detail": "a service this request needs (Redis) cannot be reached; try again in a moment",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = "10"
        return response
    if isinstance(exc, ValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response({"error": "invalid", "detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        if isinstance(detail, dict) and set(detail) == {"detail"}:
            detail = detail["detail"]
        response.data = {"error": _code_for(exc), "detail": detail}
    return response


def _wants_json(request: Any) -> bool:
    return request.path.startswith("/api/")


def not_found_view(request: Any, exception: Exception | None = None) -> Any:
    """``handler404``: the JSON error shape under ``/api/`` (an unknown path is a client's typo, not a page)."""
    if _wants_json(request):
        from django.http import JsonResponse

        path = request.path if len(request.path) <= 200 else request.path[:200] + "…"
        return JsonResponse({"error": "not_found", "detail": f"no API endpoint at {path}"}, status=404)
    from django.views import defaults

    return defaults.page_not_found(request, exception)


def server_error_view(request: Any) -> Any:
    """``handler500``: the JSON error shape under ``/api/``; the traceback goes to the log only."""
    if _wants_json(request):
        from django.http import JsonResponse

        detail = "the server failed on this request; the error is logged, try again or tell the administrator"
        return JsonResponse({"error": "server_error", "detail": detail}, status=500)
    from django.views import defaults

    return defaults.server_error(request)
