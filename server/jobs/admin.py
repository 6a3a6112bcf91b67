"""Read-mostly Django admin for support: find a job quickly."""

from __future__ import annotations

from django.contrib import admin

from server.jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "created_at", "heartbeat_at"]
    list_filter = ["kind", "status"]
