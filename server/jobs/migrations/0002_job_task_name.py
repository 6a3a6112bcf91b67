"""A job names the Celery task that runs it (dispatch by name); ``kind`` becomes a free label of its creator.

Existing rows get the task their kind ran before, so pending jobs and retries of running ones keep working."""

from django.db import migrations, models

TASK_FOR_KIND = {
    "training": "gpu.train",
    "proposal": "gpu.propose_mask",
    "batch_proposal": "gpu.batch_propose",
    "epi_update": "gpu.epi_update",
    "scoring": "gpu.score_worklist",
    "evaluation": "gpu.evaluate",
}


def fill_task_names(apps, schema_editor) -> None:
    job = apps.get_model("jobs", "Job")
    for kind, task_name in TASK_FOR_KIND.items():
        job.objects.filter(kind=kind, task_name="").update(task_name=task_name)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_job_from_studio")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="task_name",
            field=models.CharField(default="", help_text="the Celery task that runs the job", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_task_names, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(help_text="what the job does, as its creator names it", max_length=16),
        ),
    ]
