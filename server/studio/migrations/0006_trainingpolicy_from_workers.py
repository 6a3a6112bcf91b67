"""``TrainingPolicy`` (how a project's training rounds end) moves from the workers app to the studio, which makes
the promotion decision. State only: the table ``workers_trainingpolicy`` and its rows stay as they are; the
content type follows the model."""

import django.db.models.deletion
from django.db import migrations, models


def _rename_content_type(apps, old: str, new: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    if not content_type.objects.filter(app_label=new, model="trainingpolicy").exists():
        content_type.objects.filter(app_label=old, model="trainingpolicy").update(app_label=new)


def forwards(apps, schema_editor) -> None:
    _rename_content_type(apps, "workers", "studio")


def backwards(apps, schema_editor) -> None:
    _rename_content_type(apps, "studio", "workers")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("studio", "0005_job_to_jobs"),
        ("workers", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="TrainingPolicy",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "promotion",
                            models.CharField(
                                choices=[("auto_if_better", "Auto If Better"), ("manual", "Manual")],
                                default="auto_if_better",
                                max_length=16,
                            ),
                        ),
                        (
                            "min_improvement",
                            models.FloatField(
                                default=0.0, help_text="val Dice gain a candidate needs for auto-promotion"
                            ),
                        ),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "project",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="training_policy",
                                to="studio.project",
                            ),
                        ),
                    ],
                    options={"db_table": "workers_trainingpolicy"},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
