"""Jobs record their queue (worker pool) and the device kind of the worker that claimed them.

Existing rows get the queue their task is routed to now (``server/celery.py``: training, evaluation and EPI
updates -> ``training``, other ``gpu.*`` -> ``inference``, ``default.*`` -> ``default``); their device stays
unknown (blank)."""

from django.db import migrations, models

TRAINING_TASKS = ("gpu.train", "gpu.evaluate", "gpu.epi_update")


def fill_queues(apps, schema_editor) -> None:
    job = apps.get_model("jobs", "Job")
    job.objects.filter(task_name__in=TRAINING_TASKS).update(queue="training")
    job.objects.filter(task_name__startswith="gpu.", queue="").update(queue="inference")
    job.objects.filter(queue="").update(queue="default")


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_job_task_name")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="queue",
            field=models.CharField(
                blank=True, default="", help_text="the queue (worker pool) its task is routed to", max_length=64
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="job",
            name="device",
            field=models.CharField(
                blank=True, default="", help_text="device kind of the worker that claimed it", max_length=16
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_queues, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["queue", "status"], name="job_queue_status"),
        ),
    ]
