from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from server.core.errors import ServiceError
from server.core.health import run_checks
from server.core.security import AnonThrottle


class HealthApi(APIView):
    """Database, Redis and Celery worker reachability; HTTP 200 only when all are up.

    Anonymous and non-staff callers learn only whether each check is ok; the details (database kind, worker host
    names, error text, timings) are for authenticated staff (``is_staff``)."""

    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.CharField(),
                    "checks": serializers.DictField(child=serializers.DictField()),
                },
            ),
            503: None,
        }
    )
    def get(self, request):
        checks = run_checks()
        ok = all(c.ok for c in checks)
        staff = bool(getattr(request.user, "is_staff", False))
        body = {
            "status": "ok" if ok else "degraded",
            "checks": {
                c.name: ({"ok": c.ok, "detail": c.detail, "ms": c.ms} if staff else {"ok": c.ok}) for c in checks
            },
        }
        return Response(body, status=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE)


class TokenInput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenThrottle(AnonThrottle):
    rate = "30/min"


class TokenApi(APIView):
    """``POST``: exchange a username and password for a new API token (``Authorization: Token <token>``); each login
    gives a new token, stored hashed, expiring after ``LVIT_TOKEN_TTL_HOURS``. ``DELETE``: revoke the token the
    request is made with (``?all=1``: every token of the user). A password change revokes all of them.

    Failed logins count towards the lockout of django-axes (per username and per address, see docs/security.md)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [TokenThrottle]

    def get_authenticators(self):
        if getattr(self, "request", None) is not None and self.request.method == "DELETE":
            return [KnoxTokenAuthentication()]
        return super().get_authenticators()

    def get_permissions(self):
        if self.request.method == "DELETE":
            return [IsAuthenticated()]
        return super().get_permissions()

    @extend_schema(
        request=TokenInput,
        responses={
            200: inline_serializer(
                "TokenOutput", {"token": serializers.CharField(), "expiry": serializers.DateTimeField(allow_null=True)}
            )
        },
    )
    def post(self, request):
        data = TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        django_request = request._request  # django-axes marks a locked-out login on the Django request
        user = authenticate(django_request, **data.validated_data)
        if getattr(django_request, "axes_locked_out", False):
            raise ServiceError(
                "too many failed logins for this account or address; try again later",
                code="too_many_attempts",
                status_code=429,
            )
        if user is None or not user.is_active:
            raise ServiceError("wrong username or password", code="invalid_credentials", status_code=400)
        # as django.contrib.auth.login does: last_login is updated and django-axes resets the failure count
        user_logged_in.send(sender=user.__class__, request=django_request, user=user)
        instance, token = AuthToken.objects.create(user=user)
        return Response({"token": token, "expiry": instance.expiry})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        tokens = AuthToken.objects.filter(user=request.user)
        if request.query_params.get("all") not in ("1", "true"):
            tokens = tokens.filter(pk=request.auth.pk)
        tokens.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
