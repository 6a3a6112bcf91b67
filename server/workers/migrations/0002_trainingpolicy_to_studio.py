"""``TrainingPolicy`` now lives in the studio (``studio/migrations/0006``). State only; the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("studio", "0006_trainingpolicy_from_workers"),
        ("workers", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="TrainingPolicy")],
            database_operations=[],
        ),
    ]
