"""``Membership`` moves from the studio to ``core`` (the access policy's table). State only: the table
``studio_membership`` and its rows stay as they are; the content type follows the model so that permissions
and admin log entries keep pointing at it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _rename_content_type(apps, old: str, new: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    if not content_type.objects.filter(app_label=new, model="membership").exists():
        content_type.objects.filter(app_label=old, model="membership").update(app_label=new)


def forwards(apps, schema_editor) -> None:
    _rename_content_type(apps, "studio", "core")


def backwards(apps, schema_editor) -> None:
    _rename_content_type(apps, "core", "studio")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("studio", "0003_worklist_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "role",
                            models.CharField(
                                choices=[("annotator", "Annotator"), ("reviewer", "Reviewer"), ("admin", "Admin")],
                                default="annotator",
                                max_length=16,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "project",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to="studio.project",
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "studio_membership",
                        "ordering": ["id"],
                        "constraints": [
                            models.UniqueConstraint(fields=("project", "user"), name="membership_unique_user")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
