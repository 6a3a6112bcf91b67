"""Writes. Import from the submodules (``server.studio.services.masks`` ...) or from here.

Jobs and model-version creation: ``server.workers.services`` (the one implementation)."""

from __future__ import annotations

from server.studio.services.cases import (
    case_create,
    case_create_many,
    case_delete,
    case_prepare,
    case_release,
    case_update,
    report_update,
    upload_items_from_zip,
    worklist_next,
)
from server.studio.services.lvit import lvit_import
from server.studio.services.masks import (
    mask_accept,
    mask_create_proposal,
    mask_reject,
    mask_save,
    pseudolabel_soft_map,
    pseudolabel_update,
)
from server.studio.services.projects import member_remove, member_set, project_create, project_delete, project_update
from server.studio.services.registry import model_version_activate, model_version_retire, model_version_update_metrics

__all__ = [
    "case_create",
    "case_create_many",
    "case_delete",
    "case_prepare",
    "case_release",
    "case_update",
    "lvit_import",
    "mask_accept",
    "mask_create_proposal",
    "mask_reject",
    "mask_save",
    "member_remove",
    "member_set",
    "model_version_activate",
    "model_version_retire",
    "model_version_update_metrics",
    "project_create",
    "project_delete",
    "project_update",
    "pseudolabel_soft_map",
    "pseudolabel_update",
    "report_update",
    "upload_items_from_zip",
    "worklist_next",
]
