"""Mask versions record whether they are empty and (model maps) their highest probability.

Backfill: ``is_empty`` from the stored pixel count (every row, one UPDATE). ``prob_max`` of existing proposals
stays null: it needs each stored probability map read back from storage, which a migration should not do; the
editor then falls back to the map it loads."""

from django.db import migrations, models


def fill_is_empty(apps, schema_editor) -> None:
    apps.get_model("studio", "MaskVersion").objects.filter(foreground=0).update(is_empty=True)


class Migration(migrations.Migration):
    dependencies = [("studio", "0009_loop_validation_sets_promotion_effort")]

    operations = [
        migrations.AddField(
            model_name="maskversion",
            name="is_empty",
            field=models.BooleanField(
                default=False, help_text="no mask pixel: for a proposal, the model found no lesion"
            ),
        ),
        migrations.AddField(
            model_name="maskversion",
            name="prob_max",
            field=models.FloatField(
                blank=True,
                help_text="highest probability in the model's map (proposals and pseudo-labels)",
                null=True,
            ),
        ),
        migrations.RunPython(fill_is_empty, migrations.RunPython.noop),
    ]
