from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from server.core.errors import ServiceError
from server.core.health import run_checks


class HealthApi(APIView):
    """Database, Redis and Celery worker reachability; HTTP 200 only when all are up."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

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
        body = {
            "status": "ok" if ok else "degraded",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": c.ms} for c in checks},
        }
        return Response(body, status=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE)


class TokenInput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenThrottle(AnonRateThrottle):
    rate = "30/min"


class TokenApi(APIView):
    """Exchange a username and password for an API token (``Authorization: Token <token>``)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [TokenThrottle]

    @extend_schema(
        request=TokenInput, responses={200: inline_serializer("TokenOutput", {"token": serializers.CharField()})}
    )
    def post(self, request):
        data = TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None or not user.is_active:
            raise ServiceError("wrong username or password", code="invalid_credentials", status_code=400)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
