"""Seed the report templates: lung infection (QaTa-COV19 / MosMedData+), esophageal tumour (ESO-CT), free text."""

from __future__ import annotations

from django.db import migrations

from server.studio.reports import SEEDED_TEMPLATES, seed_templates


def seed(apps, schema_editor) -> None:
    seed_templates(apps.get_model("studio", "ReportTemplate"))


def unseed(apps, schema_editor) -> None:
    ReportTemplate = apps.get_model("studio", "ReportTemplate")
    ReportTemplate.objects.filter(slug__in=[s["slug"] for s in SEEDED_TEMPLATES], projects__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
