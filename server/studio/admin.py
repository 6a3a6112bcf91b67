"""Read-mostly Django admin for support: find a project, a case or an audit event quickly (jobs: ``server/jobs``)."""

from __future__ import annotations

from django.contrib import admin

from server.core.models import Membership
from server.studio.models import AuditEvent, Case, MaskVersion, ModelVersion, Project, ReportTemplate


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "template", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(ReportTemplate)
class ReportTemplateAdmin(admin.ModelAdmin):
    list_display = ["id", "slug", "name"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "split", "state", "assignee", "al_score"]
    list_filter = ["state", "split"]
    search_fields = ["name"]
    raw_id_fields = ["report", "head_mask", "assignee", "created_by"]


@admin.register(MaskVersion)
class MaskVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "version", "kind", "author", "model_version", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["case", "parent", "report", "model_version"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "number", "status", "created_at", "activated_at"]
    list_filter = ["status"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "actor", "action", "target_type", "target_id", "created_at"]
    list_filter = ["action"]
