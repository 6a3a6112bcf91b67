"""``Job`` moves from the studio to the job engine. State only: the table ``studio_job`` and its rows stay as
they are; the content type follows the model so that permissions and admin log entries keep pointing at it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _rename_content_type(apps, old: str, new: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    if not content_type.objects.filter(app_label=new, model="job").exists():
        content_type.objects.filter(app_label=old, model="job").update(app_label=new)


def forwards(apps, schema_editor) -> None:
    _rename_content_type(apps, "studio", "jobs")


def backwards(apps, schema_editor) -> None:
    _rename_content_type(apps, "jobs", "studio")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("studio", "0004_membership_to_core"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Job",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("training", "Training"),
                                    ("proposal", "Proposal"),
                                    ("batch_proposal", "Batch Proposal"),
                                    ("epi_update", "Epi Update"),
                                    ("scoring", "Scoring"),
                                    ("evaluation", "Evaluation"),
                                    ("export", "Export"),
                                ],
                                max_length=16,
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                    ("cancelled", "Cancelled"),
                                ],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("progress", models.JSONField(blank=True, default=dict)),
                        ("message", models.TextField(blank=True)),
                        ("params", models.JSONField(blank=True, default=dict)),
                        ("result", models.JSONField(blank=True, default=dict)),
                        ("celery_task_id", models.CharField(blank=True, max_length=255)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "case",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="jobs",
                                to="studio.case",
                            ),
                        ),
                        (
                            "created_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="jobs",
                                to="studio.project",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "studio_job",
                        "ordering": ["-id"],
                        "indexes": [
                            models.Index(fields=["project", "kind", "status"], name="job_project_kind_status"),
                            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
