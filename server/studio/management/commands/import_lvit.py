"""``python manage.py import_lvit <folder> --project NAME``: import a dataset in LViT's folder layout."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from server.core.errors import ServiceError
from server.studio.models import Project, ReportTemplate
from server.studio.services.lvit import DirSource, guess_template, lvit_import
from server.studio.services.projects import project_create


class Command(BaseCommand):
    help = (
        "Import <folder> laid out as LViT expects (Train_Folder/img, labelcol, Train_text.csv|xlsx; Val_, Test_ "
        "likewise) into a project, created if missing. Masks become accepted versions, text becomes reports."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("--project", required=True, help="project name (created when missing)")
        parser.add_argument("--template", default="", help="template slug for a new project (default: guessed)")
        parser.add_argument("--user", default="", help="username that owns a new project and the import")

    def handle(self, *args, folder: Path, project: str, template: str, user: str, **options) -> None:
        try:
            source = DirSource(folder)
            owner = None
            if user:
                owner = get_user_model().objects.filter(username=user).first()
                if owner is None:
                    raise CommandError(f"no user {user!r}")
            with transaction.atomic():  # a failed import leaves no new, empty project behind
                found = Project.objects.filter(name=project).first()
                if found is None:
                    slug = template or guess_template(source)
                    if owner is not None:
                        found = project_create(user=owner, name=project, template=slug)
                    else:
                        found = Project.objects.create(name=project, template=ReportTemplate.objects.get(slug=slug))
                    self.stdout.write(f"created project {found.name!r} (id {found.pk}, template {slug})")
                result = lvit_import(project=found, user=owner, source=source, check_role=owner is not None)
        except ServiceError as exc:
            raise CommandError(str(exc.detail)) from None
        except ReportTemplate.DoesNotExist:
            raise CommandError(f"unknown template {template!r}") from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(
            f"imported {result.cases} cases ({result.labeled} with accepted masks, {result.reports} reports, "
            f"{result.structured_reports} structured) into project {found.name!r}: {result.splits}"
        )
