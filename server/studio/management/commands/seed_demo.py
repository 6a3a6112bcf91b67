"""``python manage.py seed_demo``: a demo project of SYNTHETIC chest-radiograph-like phantoms (idempotent)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from server.core.models import Membership, Role
from server.studio import imaging, reports
from server.studio.demo import phantom
from server.studio.models import Case, Project, ReportTemplate
from server.studio.services.cases import UploadItem, case_create_many
from server.studio.services.common import written_files
from server.studio.services.masks import mask_import_accepted

PROJECT_NAME = "Demo: synthetic chest X-rays (SYNTHETIC)"
DESCRIPTION = (
    "SYNTHETIC data for trying the app: numpy-generated phantoms (two dark lung fields, ribs, bright lesions in "
    "named lung zones), NOT images of patients. Reports are generated from the phantom lesions."
)


def demo_plan(count: int = 24) -> list[dict]:
    """Name, split, whether labeled, and the phantom seed of each demo case."""
    plan = []
    for i in range(count):
        split = "train" if i < count * 2 // 3 else ("val" if i < count * 5 // 6 else "test")
        labeled = split != "train" or i % 3 != 2  # two thirds of train, and all val/test, carry accepted masks
        plan.append(
            {"name": f"synthetic-phantom-{i + 1:02d}.png", "split": split, "labeled": labeled, "seed": 1000 + i}
        )
    return plan


class Command(BaseCommand):
    help = "Create (or complete) the demo project of SYNTHETIC chest X-ray phantoms. Safe to run twice."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", default="", help="username to make admin of the demo project")
        parser.add_argument("--count", type=int, default=24)
        parser.add_argument("--size", type=int, default=256)

    def handle(self, *args, user: str, count: int, size: int, **options) -> None:
        owner = None
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"no user {user!r}")
        template = ReportTemplate.objects.get(slug="lung-infection")
        with transaction.atomic():
            project, created = Project.objects.get_or_create(
                name=PROJECT_NAME, defaults={"description": DESCRIPTION, "template": template, "created_by": owner}
            )
            if owner is not None:
                Membership.objects.get_or_create(project=project, user=owner, defaults={"role": Role.ADMIN})
        existing = set(Case.objects.filter(project=project).values_list("name", flat=True))
        tmpl = reports.Template.of(template)
        added = 0
        for entry in demo_plan(count):
            if entry["name"] in existing:
                continue
            p = phantom(entry["seed"], size=size)
            png = imaging.encode_png(p.image)
            fields, text = reports.render(tmpl, p.fields)
            item = UploadItem(
                name=entry["name"],
                decoded=imaging.decode_upload(png, filename=entry["name"]),
                fields=fields,
                text=text,
            )
            with transaction.atomic():
                (case,) = case_create_many(
                    project=project, user=owner, items=[item], split=entry["split"], notify=not entry["labeled"]
                )
                case.meta = {**case.meta, "synthetic": True}
                case.save(update_fields=["meta"])
                if entry["labeled"]:
                    with written_files() as janitor:
                        mask_import_accepted(
                            case=case, png=imaging.encode_mask(p.mask), mask=p.mask, user=owner, janitor=janitor
                        )
            added += 1
        verb = "created" if created else "completed"
        self.stdout.write(f"{verb} {PROJECT_NAME!r} (id {project.pk}): {added} new synthetic cases")
