"""Plain input and output serializers for the studio API (no business logic here)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from server.core.models import Membership, Role
from server.jobs.models import Job
from server.jobs.presence import job_device, job_queue_position
from server.studio import conf
from server.studio.models import (
    AuditEvent,
    Case,
    CaseState,
    MaskVersion,
    ModelVersion,
    PacsSegStore,
    PacsSource,
    Project,
    PromotionPolicy,
    ReportTemplate,
    Split,
)


class TemplateOut(serializers.ModelSerializer):
    class Meta:
        model = ReportTemplate
        fields = ["id", "slug", "name", "description", "fields", "pattern"]


class ProjectOut(serializers.ModelSerializer):
    template = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    my_role = serializers.CharField(read_only=True, allow_null=True, default=None)
    case_count = serializers.IntegerField(read_only=True, default=None)
    labeled_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "template",
            "my_role",
            "case_count",
            "labeled_count",
            "pacs_store_on_accept",
            "created_at",
        ]


class ProjectIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    template = serializers.CharField(required=False, default="free-text", help_text="template slug or id")


class ProjectPatchIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    pacs_store_on_accept = serializers.BooleanField(
        required=False, help_text="store each accepted mask of a PACS case back to the PACS as a DICOM SEG"
    )


class MemberOut(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]


class MemberIn(serializers.Serializer):
    user = serializers.CharField(max_length=150, help_text="username or user id")
    role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)


class MemberRoleIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ReportOut(serializers.Serializer):
    version = serializers.IntegerField()
    fields = serializers.JSONField()
    text = serializers.CharField()
    author = serializers.CharField(source="author.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()


class ReportIn(serializers.Serializer):
    fields = serializers.JSONField(required=False, help_text="structured fields of the project's template")
    text = serializers.CharField(required=False, allow_blank=True, max_length=4000, help_text="or a sentence")
    base_version = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)


class MaskOut(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", default=None, allow_null=True)
    model_version = serializers.IntegerField(source="model_version.number", default=None, allow_null=True)
    parent_version = serializers.IntegerField(source="parent.version", default=None, allow_null=True)
    png_url = serializers.SerializerMethodField()
    probabilities_url = serializers.SerializerMethodField()

    class Meta:
        model = MaskVersion
        fields = [
            "id",
            "version",
            "kind",
            "parent_version",
            "author",
            "model_version",
            "report_text",
            "foreground",
            "is_empty",
            "prob_max",
            "uncertainty",
            "stats",
            "created_at",
            "png_url",
            "probabilities_url",
        ]

    def get_png_url(self, obj: MaskVersion) -> str:
        return reverse("studio-mask-png", args=[obj.pk])

    def get_probabilities_url(self, obj: MaskVersion) -> str | None:
        """The proposal's probability map (uint8 PNG, p*255), or null when the version has none."""
        return reverse("studio-mask-probabilities", args=[obj.pk]) if obj.probabilities else None


class CaseOut(serializers.ModelSerializer):
    report = serializers.CharField(source="report.text", default=None, allow_null=True)
    report_version = serializers.IntegerField(source="report.version", default=None, allow_null=True)
    head_version = serializers.IntegerField(source="head_mask.version", default=None, allow_null=True)
    head_kind = serializers.CharField(source="head_mask.kind", default=None, allow_null=True)
    assignee = serializers.CharField(source="assignee.username", default=None, allow_null=True)
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "project",
            "name",
            "split",
            "state",
            "width",
            "height",
            "channels",
            "original_format",
            "assignee",
            "assigned_at",
            "al_score",
            "inconsistency",
            "zones",
            "report",
            "report_version",
            "head_version",
            "head_kind",
            "image_url",
            "created_at",
            "updated_at",
        ]

    def get_image_url(self, obj: Case) -> str:
        return reverse("studio-case-image", args=[obj.pk])


class CaseDetailOut(CaseOut):
    report_fields = serializers.JSONField(source="report.fields", default=None, allow_null=True)
    head_mask = MaskOut(allow_null=True)
    meta = serializers.JSONField()
    original_url = serializers.SerializerMethodField()
    source = serializers.SerializerMethodField()

    class Meta(CaseOut.Meta):
        fields = [*CaseOut.Meta.fields, "report_fields", "head_mask", "meta", "original_url", "source"]

    def get_original_url(self, obj: Case) -> str:
        return reverse("studio-case-image", args=[obj.pk]) + "?original=1"

    @extend_schema_field(serializers.DictField())
    def get_source(self, obj: Case) -> dict:
        """Where the case came from: ``pacs`` (with the PACS's UIDs and the frame used), ``lvit_import`` or
        ``upload``."""
        pacs = PacsSource.objects.filter(case=obj).first()
        if pacs is not None:
            return {
                "kind": "pacs",
                "pacs": pacs.pacs,
                "study_uid": pacs.study_uid,
                "series_uid": pacs.series_uid,
                "sop_uid": pacs.sop_uid,
                "modality": pacs.modality,
                "transfer_syntax": pacs.transfer_syntax,
                "frame": pacs.frame,
                "frames": pacs.frames,
                "imported_at": pacs.imported_at.isoformat(),
                "segs": [
                    {"mask": r.mask_id, "status": r.status, "sop_uid": r.sop_uid, "message": r.message}
                    for r in PacsSegStore.objects.filter(case=obj).order_by("-id")[:10]
                ],
            }
        if (obj.meta or {}).get("lvit"):
            return {"kind": "lvit_import", "original_name": obj.original_name}
        return {"kind": "upload", "original_name": obj.original_name, "original_format": obj.original_format}


class CaseUploadIn(serializers.Serializer):
    image = serializers.FileField(help_text="PNG, JPEG, TIFF, 16-bit PNG, DICOM or a zip of them; repeatable")
    report = serializers.CharField(
        required=False, allow_blank=True, max_length=4000, help_text="report sentence (a single image)"
    )
    fields = serializers.JSONField(required=False, help_text="structured report fields (JSON; a single image)")
    reports = serializers.FileField(
        required=False,
        help_text="reports of many images: a .csv or .xlsx with the columns Image (the image's file name, or LViT's "
        "mask_<name>.png) and Description; every row must name an uploaded image",
    )
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    window = serializers.ChoiceField(
        choices=["lung", "mediastinum", "soft_tissue", "bone", "brain"], required=False, help_text="CT window preset"
    )


class CasePatchIn(serializers.Serializer):
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    name = serializers.CharField(max_length=200, required=False)


class MaskIn(serializers.Serializer):
    mask = serializers.FileField(help_text="binary PNG of the image's size (non-zero = lesion)")
    base_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**31 - 1, help_text="head version you edited"
    )


class AcceptIn(serializers.Serializer):
    mask = serializers.FileField(required=False, help_text="optional: accept this mask instead of the head")
    base_version = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1)
    without_report = serializers.BooleanField(
        required=False, default=False, help_text="confirm accepting a case that has no report (recorded)"
    )


class MaskRestoreIn(serializers.Serializer):
    base_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**31 - 1, help_text="the head version you loaded"
    )


class RejectIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class ImportIn(serializers.Serializer):
    archive = serializers.FileField(help_text="zip in the LViT layout (Train_Folder/img, labelcol, *_text.csv|xlsx)")


def model_settings(mv: ModelVersion) -> dict:
    """What a version was trained with: image size, mode, init, epochs asked and run, text length, seed and the
    validation-set version (older versions: what their config holds)."""
    config, metrics = mv.config or {}, mv.metrics or {}
    settings, model, params = config.get("settings") or {}, config.get("model") or {}, config.get("params") or {}
    vs = metrics.get("validation_set") or {}
    return {
        "img_size": settings.get("img_size", model.get("img_size")),
        "mode": settings.get("mode", params.get("mode", metrics.get("mode"))),
        "init": settings.get("init", metrics.get("init")),
        "epochs": settings.get("epochs", params.get("epochs")),
        "epochs_run": settings.get("epochs_run", metrics.get("epochs_run")),
        "text_len": settings.get("text_len", model.get("text_len")),
        "seed": settings.get("seed", params.get("seed")),
        "validation_set_version": settings.get("validation_set_version", vs.get("version")),
    }


class ModelOut(serializers.ModelSerializer):
    parent = serializers.IntegerField(source="parent.number", default=None, allow_null=True)
    settings = serializers.SerializerMethodField(help_text="what the version was trained with")
    validation_set = serializers.JSONField(
        source="metrics.validation_set", default=None, help_text="{id, version, n, source, seed} it was scored on"
    )

    def get_settings(self, mv: ModelVersion) -> dict:
        return model_settings(mv)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "name",
            "status",
            "config",
            "metrics",
            "parent",
            "training_job",
            "created_at",
            "activated_at",
            "settings",
            "validation_set",
            "promotion",
        ]


class JobOut(serializers.ModelSerializer):
    queue_position = serializers.SerializerMethodField(
        help_text="pending: 1 + the pending jobs of its queue ahead of it; null otherwise"
    )
    device = serializers.SerializerMethodField(
        help_text="device kind that ran it, or (pending) that the live workers of its queue have; null: none alive"
    )

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_queue_position(self, obj: Job) -> int | None:
        return job_queue_position(obj)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_device(self, obj: Job) -> str | None:
        return job_device(obj)

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "case",
            "kind",
            "status",
            "progress",
            "message",
            "params",
            "result",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "queue",
            "queue_position",
            "device",
        ]


class TrainingParamsIn(serializers.Serializer):
    """The parameters of a training round, validated by ``training_params_validate`` for the API, the management
    command and the worker alike. Every field is optional; defaults come from the settings."""

    epochs = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    mode = serializers.ChoiceField(choices=conf.TRAINING_MODES, required=False)
    img_size = serializers.IntegerField(
        required=False, min_value=16, max_value=1024, help_text="network input size, a multiple of 16"
    )
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=256)
    init = serializers.ChoiceField(choices=conf.INITS, required=False)
    promotion = serializers.ChoiceField(
        choices=PromotionPolicy.choices, required=False, allow_null=True, help_text="default: the project's policy"
    )
    lr = serializers.FloatField(required=False, allow_null=True, min_value=1e-7, max_value=0.5)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)

    def validate_img_size(self, value: int) -> int:
        if value % 16:
            raise serializers.ValidationError("must be a multiple of 16")
        return value


class TrainingPolicyIn(serializers.Serializer):
    promotion = serializers.ChoiceField(choices=PromotionPolicy.choices)
    min_improvement = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    min_dice = serializers.FloatField(
        min_value=0.0, max_value=1.0, required=False, help_text="validation Dice floor for automatic promotion"
    )


class TrainingPolicyOut(serializers.Serializer):
    promotion = serializers.CharField()
    min_improvement = serializers.FloatField()
    min_dice = serializers.FloatField()


class TrainingReadinessOut(serializers.Serializer):
    ready = serializers.BooleanField()
    accepted = serializers.IntegerField()
    needed = serializers.IntegerField()
    missing = serializers.IntegerField()
    has_active_model = serializers.BooleanField()


class CaseOpenOut(serializers.Serializer):
    case = serializers.IntegerField()
    opened_at = serializers.DateTimeField(help_text="the caller's first open of the case")


class AuditOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "actor", "action", "target_type", "target_id", "data", "created_at"]


STATES = CaseState.values


# --- PACS ----------------------------------------------------------------------------------------------------------


class PacsStatusOut(serializers.Serializer):
    configured = serializers.BooleanField()
    name = serializers.CharField(allow_blank=True)


class PacsStudySearchIn(serializers.Serializer):
    patient_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    accession = serializers.CharField(required=False, allow_blank=True, max_length=16)
    date_from = serializers.DateField(required=False, allow_null=True)
    date_to = serializers.DateField(required=False, allow_null=True)
    modality = serializers.RegexField(r"^[A-Za-z]{0,16}$", required=False, allow_blank=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=100_000, default=0)


class PacsStudyOut(serializers.Serializer):
    study_uid = serializers.CharField()
    patient_id = serializers.CharField()
    patient_name = serializers.CharField()
    accession = serializers.CharField()
    study_date = serializers.CharField()
    description = serializers.CharField()
    modalities = serializers.ListField(child=serializers.CharField())
    series = serializers.IntegerField(allow_null=True)
    instances = serializers.IntegerField(allow_null=True)


class PacsInstanceOut(serializers.Serializer):
    sop_uid = serializers.CharField()
    sop_class_uid = serializers.CharField()
    number = serializers.IntegerField(allow_null=True)
    rows = serializers.IntegerField(allow_null=True)
    columns = serializers.IntegerField(allow_null=True)
    frames = serializers.IntegerField()
    unusable_reason = serializers.CharField()
    imported_case = serializers.IntegerField(allow_null=True)


class PacsSeriesOut(serializers.Serializer):
    series_uid = serializers.CharField()
    modality = serializers.CharField()
    number = serializers.IntegerField(allow_null=True)
    description = serializers.CharField()
    instances = PacsInstanceOut(many=True)


class PacsImportIn(serializers.Serializer):
    study_uid = serializers.CharField(max_length=64)
    series_uid = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    sop_uids = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, allow_empty=True, max_length=10_000
    )
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    window = serializers.ChoiceField(
        choices=["lung", "mediastinum", "soft_tissue", "bone", "brain"], required=False, help_text="CT window preset"
    )


class PacsSegStoreOut(serializers.ModelSerializer):
    class Meta:
        model = PacsSegStore
        fields = ["id", "case", "mask", "status", "sop_uid", "series_uid", "algorithm_type", "message", "created_at"]


class PacsStoreManyIn(serializers.Serializer):
    cases = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=10_000)
