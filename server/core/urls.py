from __future__ import annotations

from django.urls import path

from server.core.apis import HealthApi, TokenApi

urlpatterns = [
    path("health/", HealthApi.as_view(), name="health"),
    path("auth/token/", TokenApi.as_view(), name="auth-token"),
]
