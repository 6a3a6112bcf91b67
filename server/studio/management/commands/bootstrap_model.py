"""``python manage.py bootstrap_model --project <id>``: a first model for a project that has none.

Runs a normal training Job (so it shows in the UI with live progress) on the project's accepted cases,
promotes the result when it passes the promotion guard (policy ``auto_if_better``: validation Dice at least
the project's floor, above an empty mask's, lesions found; otherwise it stays a candidate and the reason is printed)
and thereby queues mask proposals and EPI pseudo-labels for the unlabeled cases. Idempotent: with an active model, or a training
round already queued or running, it does nothing new. Needs a running worker (``celery -A server worker
-Q gpu,default``); with ``--wait`` it follows the job and the proposals until they finish.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from server.core.errors import ServiceError
from server.jobs.models import FINISHED_STATUSES, Job, JobStatus
from server.jobs.selectors import job_active
from server.studio import conf, selectors
from server.studio.models import JobKind, Project
from server.studio.services.training import training_job_create


class Command(BaseCommand):
    help = "Train, promote and use a first model for a project without one (as a normal training job)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--epochs", type=int, default=None, help="default: LVIT_TRAIN_EPOCHS (3 on CPU, 20 on GPU)")
        parser.add_argument("--img-size", type=int, default=224, help="network input size (multiple of 16)")
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--mode", choices=conf.TRAINING_MODES, default="labeled_only")
        parser.add_argument("--wait", action="store_true", help="follow the job (and the proposals) until done")
        parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait with --wait")

    def handle(self, *args: Any, **opts: Any) -> None:
        project = Project.objects.filter(pk=opts["project"]).first()
        if project is None:
            raise CommandError(f"no project {opts['project']}")
        mv = selectors.model_version_active(project_id=project.pk)
        if mv is not None:
            self.stdout.write(f"project {project.pk} already has an active model: v{mv.number} (id {mv.pk})")
            return
        job = job_active(project_id=project.pk, kind=JobKind.TRAINING)
        if job is None:
            params = {
                "epochs": opts["epochs"] or conf.default_training_params()["epochs"],
                "img_size": opts["img_size"],
                "batch_size": opts["batch_size"],
                "mode": opts["mode"],
                "init": "scratch",
                "promotion": "auto_if_better",
            }
            try:
                job = training_job_create(project=project, params=params, actor=None)
            except ServiceError as exc:
                raise CommandError(f"cannot train project {project.pk}: {exc.detail}") from None
            self.stdout.write(f"training job {job.pk} queued for project {project.pk}: {params}")
        else:
            self.stdout.write(f"training job {job.pk} is already {job.status} for project {project.pk}")
        if opts["wait"]:
            self._follow(job, opts["timeout"])

    def _follow(self, job: Job, timeout: float) -> None:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            job.refresh_from_db()
            p = job.progress
            line = f"job {job.pk} {job.status} {p.get('phase', '')} epoch {p.get('epoch', 0)}/{p.get('epochs', '?')}"
            if p.get("val_dice") is not None:
                line += f" val_dice {p['val_dice']:.3f}"
            if line != last:
                self.stdout.write(line)
                last = line
            if job.status in FINISHED_STATUSES:
                break
            time.sleep(2)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"training job {job.pk} ended {job.status}: {job.message}")
        self.stdout.write(
            f"model version {job.result.get('model_version')} promoted={job.result.get('promoted')}: "
            f"{job.result.get('reason', '')}"
        )
        follow = Job.objects.filter(project=job.project, kind=JobKind.BATCH_PROPOSAL, created_at__gte=job.created_at)
        while time.monotonic() < deadline and follow.exclude(status__in=FINISHED_STATUSES).exists():
            time.sleep(2)
        for f in follow:
            self.stdout.write(f"proposals job {f.pk} {f.status}: {f.result.get('cases', 0)} cases")
