"""``Membership`` now lives in ``core`` (see ``core/migrations/0001``): the project's members go through it.
State only; the table ``studio_membership`` is unchanged."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_membership_from_studio"),
        ("studio", "0003_worklist_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="project",
                    name="members",
                    field=models.ManyToManyField(
                        related_name="projects", through="core.Membership", to=settings.AUTH_USER_MODEL
                    ),
                ),
                migrations.DeleteModel(name="Membership"),
            ],
            database_operations=[],
        ),
    ]
