"""``python manage.py redecode_dicom --project ID [--apply]``: bring a project's DICOM cases to the current display
rules (VOI LUT Sequence, VOILUTFunction, palette colour). A dry run by default: it counts what would change."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from server.core.errors import ServiceError
from server.studio.models import Case, Project
from server.studio.services.dicom_images import case_image_redecode


class Command(BaseCommand):
    help = (
        "Re-derive the picture of every DICOM case of a project from its stored de-identified original with the "
        "current display rules. Without --apply, only report how many would change. Masks stay aligned; retrain "
        "afterwards, since the models saw the old pictures."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, type=int, help="project id")
        parser.add_argument("--apply", action="store_true", help="store the new pictures (default: dry run)")

    def handle(self, *args, project: int, apply: bool, **options) -> None:
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project {project}")
        changed, failed, total = [], [], 0
        for case in Case.objects.filter(project=found, original_format="dicom").order_by("id").iterator():
            total += 1
            try:
                if case_image_redecode(case=case, apply=apply):
                    changed.append(case.pk)
            except ServiceError as exc:
                failed.append(f"case {case.pk}: {exc.detail}")
        verb = "updated" if apply else "would change"
        self.stdout.write(f"{total} DICOM case(s); {len(changed)} {verb}: {changed[:50]}")
        for line in failed:
            self.stderr.write(line)
        if changed and not apply:
            self.stdout.write("run again with --apply to store them, then retrain the project's model")
