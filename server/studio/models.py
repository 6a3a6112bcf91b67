"""Domain model of LViT Studio: projects, cases, reports, versioned masks, pseudo-labels, model versions and their
training policy, audit.

Files live in Django's storage (``default_storage``), never at local paths, so S3 works and workers on other
hosts read and write the same files. Mask versions are immutable: corrections create new rows.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


def _case_file(instance: models.Model, filename: str) -> str:
    # The client's file name never reaches the storage path (path traversal, identifiers in names).
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    ext = ext if ext.isalnum() and len(ext) <= 5 else "bin"
    project_id = getattr(instance, "project_id", None) or getattr(getattr(instance, "case", None), "project_id", 0)
    return f"projects/{project_id}/cases/{uuid.uuid4().hex}.{ext}"


def _mask_file(instance: models.Model, filename: str) -> str:
    return f"projects/{instance.case.project_id}/masks/{uuid.uuid4().hex}.png"


def _pseudo_file(instance: models.Model, filename: str) -> str:
    return f"projects/{instance.case.project_id}/pseudo/{uuid.uuid4().hex}.png"


def _checkpoint_file(instance: models.Model, filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "pt"
    return f"projects/{instance.project_id}/models/{uuid.uuid4().hex}.{ext if ext.isalnum() else 'pt'}"


class ReportTemplate(models.Model):
    """Structured report fields and the sentence pattern that renders them (see ``server/studio/reports.py``).

    ``fields``: ``[{"name", "type": enum|multi|integer|text, "choices": [{"value", "text"}], "exclusive": [...],
    "joiner", "min", "max", "required"}]``. ``pattern``: ``{"alternatives": [{"when": {...}, "text": "..."}]}``.
    """

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    fields = models.JSONField(default=list)
    pattern = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    template = models.ForeignKey(ReportTemplate, on_delete=models.PROTECT, related_name="projects")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="core.Membership", related_name="projects")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    pacs_store_on_accept = models.BooleanField(
        default=False, help_text="store each accepted mask of a PACS case back to the PACS as a DICOM SEG"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Split(models.TextChoices):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class CaseState(models.TextChoices):
    UNLABELED = "unlabeled"
    PROPOSED = "proposed"
    IN_REVIEW = "in_review"
    LABELED = "labeled"


class Case(models.Model):
    """One 2D scan. ``image`` is the normalized 8-bit PNG every consumer uses; ``original`` is the upload
    (de-identified when DICOM)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cases")
    name = models.CharField(max_length=255)
    image = models.FileField(upload_to=_case_file, max_length=255)
    original = models.FileField(upload_to=_case_file, max_length=255, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    original_format = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField(default=1)
    meta = models.JSONField(default=dict, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    state = models.CharField(max_length=16, choices=CaseState.choices, default=CaseState.UNLABELED)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_cases"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    al_score = models.FloatField(null=True, blank=True, help_text="active-learning uncertainty, higher first")
    inconsistency = models.FloatField(null=True, blank=True, help_text="report-mask disagreement, higher first")
    zones = models.JSONField(
        null=True,
        blank=True,
        default=None,
        help_text="where report and head mask disagree by lung zone (reports.zone_summary); null when not scored",
    )
    report = models.ForeignKey(
        "Report", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="current report"
    )
    head_mask = models.ForeignKey(
        "MaskVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="latest mask"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="case_unique_name")]
        indexes = [
            models.Index(fields=["project", "state", "split"], name="case_project_state"),
            models.Index(fields=["project", "assignee"], name="case_project_assignee"),
            # Match the worklist/list ORDER BY (DESC NULLS LAST, id) so LIMIT 1 ... SKIP LOCKED walks an index.
            models.Index(F("project"), F("al_score").desc(nulls_last=True), F("id"), name="case_project_alscore"),
            models.Index(
                F("project"),
                F("al_score").desc(nulls_last=True),
                F("id"),
                condition=~Q(state="labeled"),
                name="case_open_alscore",
            ),
            models.Index(
                F("project"),
                F("inconsistency").desc(nulls_last=True),
                F("id"),
                condition=~Q(state="labeled"),
                name="case_open_inconsistency",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Report(models.Model):
    """One version of a case's report: structured fields and the sentence they render to."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="reports")
    version = models.PositiveIntegerField()
    fields = models.JSONField(default=dict)
    text = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case_id", "version"]
        constraints = [models.UniqueConstraint(fields=["case", "version"], name="report_unique_version")]


class MaskKind(models.TextChoices):
    PROPOSAL = "proposal"
    PSEUDO = "pseudo"
    CORRECTION = "correction"
    ACCEPTED = "accepted"


class MaskVersion(models.Model):
    """Immutable binary mask (8-bit PNG, 0/255, image size). Never updated after creation."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="masks")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=MaskKind.choices)
    png = models.FileField(upload_to=_mask_file, max_length=255)
    probabilities = models.FileField(upload_to=_mask_file, max_length=255, blank=True, help_text="uint8 soft map")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="masks"
    )
    report = models.ForeignKey(Report, null=True, blank=True, on_delete=models.SET_NULL, related_name="masks")
    report_text = models.TextField(blank=True)
    foreground = models.PositiveIntegerField(default=0, help_text="number of mask pixels")
    is_empty = models.BooleanField(default=False, help_text="no mask pixel: for a proposal, the model found no lesion")
    prob_max = models.FloatField(
        null=True, blank=True, help_text="highest probability in the model's map (proposals and pseudo-labels)"
    )
    uncertainty = models.FloatField(null=True, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case_id", "version"]
        constraints = [models.UniqueConstraint(fields=["case", "version"], name="mask_unique_version")]
        indexes = [models.Index(fields=["case", "kind"], name="mask_case_kind")]


class PseudoLabel(models.Model):
    """EPI state of an unlabeled case: a quantized soft map (uint8 PNG, p*255) updated each iteration."""

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="pseudo_label")
    soft_map = models.FileField(upload_to=_pseudo_file, max_length=255)
    iterations = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="pseudo_labels"
    )
    updated_at = models.DateTimeField(auto_now=True)


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True)
    checkpoint = models.FileField(upload_to=_checkpoint_file, max_length=255)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    training_job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    validation_set = models.ForeignKey(
        "ValidationSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions"
    )
    promotion = models.JSONField(
        default=dict,
        blank=True,
        help_text="the promotion decision of its round: {promoted, reason, checks, policy}; by hand: {by, at}",
    )

    class Meta:
        ordering = ["project_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="model_unique_number"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(status="active"), name="model_one_active_per_project"
            ),
        ]


class JobKind(models.TextChoices):
    """The kinds of jobs the studio runs (``Job.kind``); ``server/studio/services/jobs.py`` names their tasks."""

    TRAINING = "training"
    PROPOSAL = "proposal"
    BATCH_PROPOSAL = "batch_proposal"
    EPI_UPDATE = "epi_update"
    SCORING = "scoring"
    EVALUATION = "evaluation"
    EXPORT = "export"
    PACS_STORE = "pacs_store"
    IMPORT = "import"


class ValidationSet(models.Model):
    """The project's fixed validation cases, frozen by its first training round and versioned: every round scores
    its candidate (and the active model) on the newest version, so versions are compared on the same cases. A new
    version is made only when reviewers add (or remove) validation cases."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="validation_sets")
    version = models.PositiveIntegerField()
    case_ids = models.JSONField(default=list, help_text="the cases, sorted ids")
    source = models.CharField(max_length=16, help_text="val: the val split; seeded: a seeded pick of train cases")
    seed = models.IntegerField(null=True, blank=True, help_text="the pick's seed (source seeded)")
    added = models.JSONField(default=list, blank=True, help_text="case ids new in this version")
    removed = models.JSONField(default=list, blank=True, help_text="case ids dropped in this version")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "version"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="validation_set_unique_version")]


class CaseOpen(models.Model):
    """When a member first opened a case in the editor (the start of "seconds to accept")."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="opens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "user"], name="case_open_unique_user")]


def default_promotion_floor() -> float:
    """``LVIT_PROMOTION_MIN_DICE`` (0.3): the validation Dice an automatically promoted model must reach."""
    return float(getattr(settings, "LVIT_PROMOTION_MIN_DICE", 0.3))


class PromotionPolicy(models.TextChoices):
    AUTO_IF_BETTER = "auto_if_better"
    MANUAL = "manual"


class TrainingPolicy(models.Model):
    """How a project's retraining rounds end. A project without a row uses the defaults below."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="training_policy")
    promotion = models.CharField(max_length=16, choices=PromotionPolicy.choices, default=PromotionPolicy.AUTO_IF_BETTER)
    min_improvement = models.FloatField(default=0.0, help_text="val Dice gain a candidate needs for auto-promotion")
    min_dice = models.FloatField(
        default=default_promotion_floor, help_text="validation Dice an automatically promoted model must reach"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "workers_trainingpolicy"  # the table predates the move to the studio; its rows are kept


class AuditEvent(models.Model):
    """Who accepted, promoted, exported, deleted what, and when."""

    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "action"], name="audit_project_action")]


class PacsSource(models.Model):
    """Where a case came from in the PACS. The stored original is de-identified (new UIDs, no patient); these are
    the PACS's own UIDs, kept only here, so a segmentation can be written back into the patient's study."""

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="pacs_source")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    pacs = models.CharField(max_length=200, help_text="the PACS's name (PACS_NAME) at import")
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64)
    sop_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    frame = models.PositiveIntegerField(null=True, blank=True, help_text="0-based frame of a multi-frame object")
    frames = models.PositiveIntegerField(default=1)
    transfer_syntax = models.CharField(max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "sop_uid"], name="pacs_source_unique_instance")]
        indexes = [models.Index(fields=["project", "study_uid"], name="pacs_source_study")]


class SegStoreStatus(models.TextChoices):
    STORED = "stored"
    FAILED = "failed"


class PacsSegStore(models.Model):
    """One attempt to store an accepted mask in the PACS as a DICOM SEG (STOW-RS): what was sent and the answer."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="pacs_segs")
    mask = models.ForeignKey(MaskVersion, on_delete=models.CASCADE, related_name="pacs_segs")
    status = models.CharField(max_length=8, choices=SegStoreStatus.choices)
    sop_uid = models.CharField(max_length=64, blank=True, help_text="the SEG's SOP Instance UID")
    series_uid = models.CharField(max_length=64, blank=True)
    algorithm_type = models.CharField(max_length=16, blank=True)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["mask"], condition=Q(status="stored"), name="pacs_seg_one_stored_per_mask")
        ]
