"""Cases: upload (validated before anything is stored), reports, worklist assignment, scores, deletion.

An upload and a report change of an unlabeled case each request a proposal once they commit
(``proposals.proposals_request_on_commit``)."""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.studio import imaging, reports
from server.studio.models import Case, CaseState, Project, Report, Split
from server.studio.services.common import (
    audit,
    delete_files_on_commit,
    problem_text,
    problems_error,
    written_files,
)
from server.studio.services.masks import case_score
from server.studio.services.proposals import proposals_request_on_commit

DEFAULT_ASSIGNMENT_TTL = timedelta(minutes=30)
STRATEGIES = ("uncertainty", "random", "inconsistency")


@dataclass
class UploadItem:
    """One validated upload, ready to be stored."""

    name: str
    decoded: imaging.DecodedImage
    fields: dict
    text: str


def _split(value: str | None) -> str:
    if value in (None, ""):
        return Split.TRAIN
    if value not in Split.values:
        raise ServiceError({"split": f"unknown split {value!r}; use one of {Split.values}"})
    return value


def case_prepare(
    *,
    project: Project,
    data: bytes,
    filename: str,
    report_text: str | None = None,
    fields: dict | None = None,
    window: str | None = None,
) -> UploadItem:
    """Validate one file and its report without touching storage or the database."""
    name = imaging.safe_filename(filename)
    decoded = imaging.decode_upload(data, filename=name, window=window)
    if decoded.original_format == "dicom":
        name = posixpath.splitext(name)[0] + ".png"  # the case shows (and exports) the normalized image
    text, parsed = "", {}
    if fields or (report_text or "").strip():
        parsed, text = reports.report_from_input(reports.Template.of(project.template), fields=fields, text=report_text)
    return UploadItem(name=name, decoded=decoded, fields=parsed, text=text)


def _store_case(
    *, project: Project, user: Any, item: UploadItem, split: str, janitor: Any, meta: dict | None = None
) -> Case:
    d = item.decoded
    case = Case(
        project=project,
        name=item.name,
        original_name=item.name,
        original_format=d.original_format,
        width=d.width,
        height=d.height,
        channels=d.channels,
        meta={**d.meta, **(meta or {})},
        split=split,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    janitor.save(case.image, "image.png", d.normalized_png)
    ext = {"dicom": "dcm", "jpeg": "jpg", "tiff": "tif"}.get(d.original_format, d.original_format)
    janitor.save(case.original, f"original.{ext}", d.original)
    case.save()
    if item.text:
        report = Report.objects.create(case=case, version=1, fields=item.fields, text=item.text, author=case.created_by)
        case.report = report
        case.save(update_fields=["report"])
    return case


def case_names_check(*, project: Project, names: list[str], repeated: str) -> None:
    """409 ``duplicate_name`` when ``names`` repeat one (``repeated`` says how, e.g. "the upload names these files
    twice") or when the project already has a case of one of them."""
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        raise Conflict(f"{repeated}: {dupes[:20]}", code="duplicate_name")
    taken = list(Case.objects.filter(project=project, name__in=names).values_list("name", flat=True)[:20])
    if taken:
        raise Conflict(f"cases with these names already exist in the project: {taken}", code="duplicate_name")


def case_create_many(
    *, project: Project, user: Any, items: list[UploadItem], split: str | None = None, notify: bool = True
) -> list[Case]:
    """Store validated uploads all-or-nothing; files are deleted again if the transaction fails."""
    split = _split(split)
    case_names_check(project=project, names=[i.name for i in items], repeated="the upload names these files twice")
    try:
        with written_files() as janitor, transaction.atomic():
            cases = [_store_case(project=project, user=user, item=i, split=split, janitor=janitor) for i in items]
            audit(project=project, actor=user, action="cases.uploaded", count=len(cases))
            if notify:
                proposals_request_on_commit(case_ids=[c.pk for c in cases], reason="uploaded")
    except IntegrityError:  # a concurrent upload took one of the names between the check and the insert
        raise Conflict("a case with one of these names was created meanwhile; retry", code="duplicate_name") from None
    return cases


def case_create(
    *,
    project: Project,
    user: Any,
    data: bytes,
    filename: str,
    split: str | None = None,
    report_text: str | None = None,
    fields: dict | None = None,
    window: str | None = None,
) -> Case:
    item = case_prepare(
        project=project, data=data, filename=filename, report_text=report_text, fields=fields, window=window
    )
    return case_create_many(project=project, user=user, items=[item], split=split)[0]


def _apply_report_table(
    *, project: Project, items: list[UploadItem], table: tuple[str, bytes], errors: list[dict[str, str]]
) -> None:
    """Give each image its row of a reports table (``Image``, ``Description``); every row that names no image, or a
    description the template refuses, becomes an error."""
    name, data = table
    fmt = posixpath.splitext(name)[1].lower().lstrip(".")
    if fmt not in ("csv", "xlsx"):
        raise ServiceError({"reports": f"{name!r} is not a .csv or .xlsx file (columns Image, Description)"})
    rows = reports.report_table_rows(data, fmt, where=name)
    found, row_errors = reports.match_report_rows([i.name for i in items], rows, where=name)
    errors += [{**e, "code": "invalid_report_table"} for e in row_errors]
    template = reports.Template.of(project.template)
    for item in items:
        text = found.get(item.name)
        if text is None:
            continue
        try:
            item.fields, item.text = reports.report_from_input(template, fields=None, text=text)
        except reports.ReportError as exc:
            errors.append({"file": f"{name}: {item.name}", "error": problem_text(exc), "code": "invalid_report"})


def case_upload(
    *,
    project: Project,
    user: Any,
    files: list[tuple[str, bytes]],
    split: str | None = None,
    report_text: str | None = None,
    fields: dict | None = None,
    window: str | None = None,
    report_table: tuple[str, bytes] | None = None,
) -> list[Case]:
    """Upload ``(filename, bytes)`` files, each an image or a zip of images, all-or-nothing.

    Reports: one (sentence or structured ``fields``) for a single image, or ``report_table`` (file name, bytes: a
    CSV/XLSX with the columns ``Image`` and ``Description``) for many. Every file and every table row is checked
    before anything is stored; the 400 lists each problem with the file it belongs to.
    """
    if report_table is not None and (report_text or fields):
        raise ServiceError("give one report (`report`/`fields`) or a reports file (`reports`), not both")
    items: list[UploadItem] = []
    errors: list[dict[str, str]] = []
    for filename, data in files:
        try:
            if imaging.is_zip(data):
                zipped, zip_errors = upload_items_from_zip(project=project, data=data, window=window, where=filename)
                items += zipped
                errors += zip_errors
            else:
                items.append(
                    case_prepare(
                        project=project,
                        data=data,
                        filename=filename,
                        report_text=report_text,
                        fields=fields,
                        window=window,
                    )
                )
        except reports.ReportError:
            raise  # the report is wrong, not the file
        except ServiceError as exc:
            errors.append({"file": filename, "error": problem_text(exc), "code": exc.code})
    if len(items) + len(errors) > 1 and (report_text or fields):
        raise ServiceError("`report`/`fields` apply to a single image; upload one image with its report")
    if report_table is not None:
        _apply_report_table(project=project, items=items, table=report_table, errors=errors)
    if errors:
        raise problems_error(errors, default_code="invalid_upload")
    return case_create_many(project=project, user=user, items=items, split=split)


def upload_items_from_zip(
    *, project: Project, data: bytes, window: str | None = None, where: str = "zip"
) -> tuple[list[UploadItem], list[dict[str, str]]]:
    """Every image in a zip (flat or in folders; folders are ignored, names must stay unique), and a problem per
    member that is not a readable image."""
    zf = imaging.open_zip(data)
    items: list[UploadItem] = []
    errors: list[dict[str, str]] = []
    for path, info in imaging.iter_zip_files(zf):
        base = posixpath.basename(path)
        try:
            items.append(
                case_prepare(project=project, data=imaging.read_member(zf, info), filename=base, window=window)
            )
        except ServiceError as exc:
            errors.append({"file": f"{where}/{path}", "error": problem_text(exc), "code": exc.code})
    if not items and not errors:
        raise ServiceError("the zip holds no files", code="empty_archive")
    return items, errors


@transaction.atomic
def report_update(
    *, case: Case, user: Any, fields: dict | None = None, text: str | None = None, base_version: int | None = None
) -> Report:
    """A new report version from structured fields or a sentence. ``base_version`` (optional) guards against
    overwriting someone else's newer report (409)."""
    # Lock alone, then read: a joined SELECT FOR UPDATE that waited would see the case row as the winner left it but
    # the report it joins from before (see masks._locked_case).
    Case.objects.select_for_update().filter(pk=case.pk).values_list("pk", flat=True).get()
    case = Case.objects.select_related("project__template", "report").get(pk=case.pk)
    parsed, sentence = reports.report_from_input(reports.Template.of(case.project.template), fields=fields, text=text)
    current = case.report
    if base_version is not None and (current.version if current else 0) != base_version:
        raise Conflict(
            {"message": "the report changed since you loaded it", "current_version": current.version if current else 0},
            code="stale_report",
        )
    if current is not None and current.text == sentence and current.fields == parsed:
        return current
    version = (current.version if current else 0) + 1
    report = Report.objects.create(case=case, version=version, fields=parsed, text=sentence, author=user)
    case.report = report
    update = ["report", "updated_at"]
    if case.head_mask_id is not None:
        case_score(case=case)
        update += ["inconsistency", "zones"]
    case.save(update_fields=update)
    if case.state != CaseState.LABELED:
        proposals_request_on_commit(case_ids=[case.pk], reason="report_changed")
    return report


@transaction.atomic
def case_update(*, case: Case, user: Any, split: str | None = None, name: str | None = None) -> Case:
    case = Case.objects.select_for_update().get(pk=case.pk)
    changed = []
    if split is not None and split != case.split:
        require_role(project=case.project, user=user, role=Role.REVIEWER)
        case.split = _split(split)
        changed.append("split")
    if name is not None and name != case.name:
        name = imaging.safe_filename(name)
        if Case.objects.filter(project_id=case.project_id, name=name).exclude(pk=case.pk).exists():
            raise Conflict(f"a case named {name!r} already exists", code="duplicate_name")
        case.name = name
        changed.append("name")
    if changed:
        case.save(update_fields=[*changed, "updated_at"])
    return case


@transaction.atomic
def case_delete(*, case: Case, user: Any) -> None:
    require_role(project=case.project, user=user, role=Role.ADMIN)
    names = [case.image.name, case.original.name]
    for m in case.masks.all():
        names += [m.png.name, m.probabilities.name]
    pseudo = getattr(case, "pseudo_label", None) if hasattr(case, "pseudo_label") else None
    if pseudo is not None:
        names.append(pseudo.soft_map.name)
    audit(project=case.project, actor=user, action="case.deleted", target=case, name=case.name)
    case.delete()
    delete_files_on_commit(names)


def _ordering(strategy: str) -> list:
    if strategy == "uncertainty":
        return [F("al_score").desc(nulls_last=True), "id"]
    if strategy == "inconsistency":
        return [F("inconsistency").desc(nulls_last=True), "id"]
    return ["?"]


@transaction.atomic
def worklist_next(
    *,
    project: Project,
    user: Any,
    strategy: str = "uncertainty",
    ttl: timedelta = DEFAULT_ASSIGNMENT_TTL,
    split: str | None = None,
) -> Case | None:
    """Claim the next case for ``user``: an unlabeled/proposed/in-review case nobody holds (or whose assignment
    expired). Rows are locked with ``SKIP LOCKED``, so two users never claim the same case at once. A user who
    still holds an unexpired case gets it back."""
    if strategy not in STRATEGIES:
        raise ServiceError({"strategy": f"unknown strategy {strategy!r}; use one of {list(STRATEGIES)}"})
    now = timezone.now()
    open_cases = Case.objects.filter(project=project).exclude(state=CaseState.LABELED)
    if split:
        open_cases = open_cases.filter(split=_split(split))
    held = open_cases.filter(assignee=user, assigned_at__gt=now - ttl).order_by("-assigned_at").first()
    if held is not None:
        return held
    free = open_cases.filter(Q(assignee__isnull=True) | Q(assigned_at__isnull=True) | Q(assigned_at__lte=now - ttl))
    if strategy == "inconsistency":
        # cases whose latest mask is a model's proposal (a correction in review is the clinician's own answer)
        free = free.filter(state=CaseState.PROPOSED)
    case = free.select_for_update(skip_locked=True, of=("self",)).order_by(*_ordering(strategy)).first()
    if case is None:
        return None
    Case.objects.filter(pk=case.pk).update(assignee=user, assigned_at=now)
    case.assignee, case.assigned_at = user, now
    return case


def case_score_set(*, case_id: int, al_score: float) -> None:
    """The case's active-learning score (model uncertainty; the worklist's ``uncertainty`` order)."""
    Case.objects.filter(pk=case_id).update(al_score=float(al_score))


@transaction.atomic
def case_release(*, case: Case, user: Any) -> Case:
    """Give back an assignment (the holder, or a reviewer+ for anyone's)."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.assignee_id not in (None, user.pk):
        require_role(project=case.project, user=user, role=Role.REVIEWER)
    case.assignee, case.assigned_at = None, None
    case.save(update_fields=["assignee", "assigned_at", "updated_at"])
    return case
