"""Versioned masks: proposals from workers, corrections against a base (409 keeps the upload), accept, reject."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from server.studio.models import AuditEvent, CaseState, MaskVersion
from server.studio.selectors import pseudo_label_soft_map
from server.studio.services.masks import mask_accept, mask_create_proposal, mask_save, pseudolabel_update
from server.studio.services.registry import model_version_create
from tests.server.conftest import mask_png, png_bytes


def f(data: bytes, name: str = "m.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def proposal(case, people, box=(10, 10, 30, 20), uncertainty=0.3):
    m = np.zeros((case.height, case.width), dtype=np.float32)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 0.9
    model = model_version_create(project=people.project, checkpoint=b"w")
    return mask_create_proposal(case=case, model_version=model, array=m > 0.5, probabilities=m, uncertainty=uncertainty)


def test_proposal_then_correction_then_accept(people, collab_client, case):
    p = proposal(case, people)
    case.refresh_from_db()
    assert case.state == CaseState.PROPOSED and case.al_score == pytest.approx(0.3) and case.head_mask_id == p.pk
    assert p.report_text == case.report.text and p.foreground == 200
    r = collab_client.post(
        f"/api/cases/{case.pk}/masks/",
        {"mask": f(mask_png(box=(10, 10, 40, 20))), "base_version": p.version},
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    correction = r.json()
    assert correction["kind"] == "correction" and correction["parent_version"] == 1
    assert correction["stats"] == {"foreground": 300, "vs_version": 1, "added": 100, "removed": 0}
    r = collab_client.post(f"/api/cases/{case.pk}/accept/", {"base_version": 2}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["kind"] == "accepted" and r.json()["version"] == 3
    detail = collab_client.get(f"/api/cases/{case.pk}/").json()
    assert detail["state"] == "labeled" and detail["head_mask"]["version"] == 3
    history = collab_client.get(f"/api/cases/{case.pk}/masks/").json()
    assert [(m["version"], m["kind"]) for m in history] == [(1, "proposal"), (2, "correction"), (3, "accepted")]
    png = collab_client.get(history[2]["png_url"])
    arr = np.asarray(Image.open(io.BytesIO(b"".join(png.streaming_content))))
    assert arr.shape == (48, 64) and int((arr > 0).sum()) == 300
    prob = collab_client.get(f"/api/masks/{p.pk}/probabilities/")
    assert prob.status_code == 200
    assert AuditEvent.objects.filter(action="mask.accepted", actor=people.collaborator).count() == 1


def test_stale_base_is_409_and_the_upload_is_kept(people, owner_client, collab_client, case):
    p = proposal(case, people)
    first = collab_client.post(
        f"/api/cases/{case.pk}/masks/", {"mask": f(mask_png()), "base_version": p.version}, format="multipart"
    )
    assert first.status_code == 201
    mine = mask_png(box=(0, 0, 5, 5))
    r = owner_client.post(
        f"/api/cases/{case.pk}/masks/", {"mask": f(mine), "base_version": p.version}, format="multipart"
    )
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "stale_base" and body["detail"]["current_version"] == 2
    kept = MaskVersion.objects.get(pk=body["detail"]["kept_mask_id"])
    assert kept.stats["conflict"] is True and kept.author == people.owner
    with kept.png.open("rb") as fh:
        assert np.asarray(Image.open(fh)).astype(bool).sum() == 25
    case.refresh_from_db()
    assert case.head_mask.version == 2  # the head did not move
    retry = owner_client.post(f"/api/cases/{case.pk}/masks/", {"mask": f(mine), "base_version": 2}, format="multipart")
    assert retry.status_code == 201 and retry.json()["version"] == 4


def test_first_mask_without_base_and_stale_none(people, collab_client, case):
    r = collab_client.post(f"/api/cases/{case.pk}/masks/", {"mask": f(mask_png())}, format="multipart")
    assert r.status_code == 201 and r.json()["version"] == 1
    r = collab_client.post(f"/api/cases/{case.pk}/masks/", {"mask": f(mask_png())}, format="multipart")
    assert r.status_code == 409  # the client believed there was no mask


def test_wrong_size_mask_is_400_and_stores_nothing(people, collab_client, case):
    r = collab_client.post(
        f"/api/cases/{case.pk}/masks/", {"mask": f(mask_png(width=10, height=10))}, format="multipart"
    )
    assert r.status_code == 400
    assert r.json()["error"] == "mask_size" and "expected 64x48" in r.json()["detail"]
    r = collab_client.post(f"/api/cases/{case.pk}/masks/", {"mask": f(b"not a png")}, format="multipart")
    assert r.status_code == 400
    assert MaskVersion.objects.count() == 0


def test_accept_with_upload_and_without_anything(people, collab_client, case):
    r = collab_client.post(f"/api/cases/{case.pk}/accept/", {}, format="json")
    assert r.status_code == 400 and r.json()["error"] == "no_mask"
    r = collab_client.post(f"/api/cases/{case.pk}/accept/", {"mask": f(mask_png())}, format="multipart")
    assert r.status_code == 200 and r.json()["kind"] == "accepted"
    again = collab_client.post(f"/api/cases/{case.pk}/accept/", {}, format="json")
    assert again.status_code == 200 and again.json()["version"] == 1  # idempotent


def test_reject_returns_the_case_to_unlabeled(people, collab_client, case):
    p = proposal(case, people)
    r = collab_client.post(f"/api/cases/{case.pk}/reject/", {"reason": "wrong lung"}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "unlabeled" and r.json()["head_version"] is None
    assert AuditEvent.objects.get(action="mask.rejected").data["reason"] == "wrong lung"
    assert list(MaskVersion.objects.filter(case=case)) == [p], "the history keeps the rejected proposal"
    r = collab_client.post(f"/api/cases/{case.pk}/reject/", {}, format="json")
    assert r.status_code == 400 and r.json()["error"] == "no_mask"
    r = collab_client.post(f"/api/cases/{case.pk}/accept/", {"mask": f(mask_png())}, format="multipart")
    assert r.status_code == 200, r.json()
    r = collab_client.post(f"/api/cases/{case.pk}/reject/", {}, format="json")
    assert r.status_code == 409 and r.json()["error"] == "already_labeled"


def test_a_saved_correction_is_not_rejected(people, collab_client, case):
    p = proposal(case, people)
    r = collab_client.post(
        f"/api/cases/{case.pk}/masks/", {"mask": f(mask_png()), "base_version": p.version}, format="multipart"
    )
    assert r.status_code == 201
    r = collab_client.post(f"/api/cases/{case.pk}/reject/", {}, format="json")
    assert r.status_code == 409 and r.json()["error"] == "not_a_proposal"
    case.refresh_from_db()
    assert case.state == CaseState.IN_REVIEW and case.head_mask.version == 2


def test_proposal_on_labeled_case_keeps_the_accepted_head(people, case):
    mask_accept(case=case, user=people.owner, png_bytes=mask_png())
    proposal(case, people)
    case.refresh_from_db()
    assert case.state == CaseState.LABELED and case.head_mask.kind == "accepted"


def test_inconsistency_is_computed_from_the_proposal(people, case):
    # report: lower RIGHT lung = image's LEFT half, lower third
    proposal(case, people, box=(2, 36, 20, 47))
    case.refresh_from_db()
    assert case.inconsistency == 0.0
    proposal(case, people, box=(40, 2, 60, 12))  # image's right, upper: patient's left upper
    case.refresh_from_db()
    assert case.inconsistency == 1.0


def test_pseudolabel_update_counts_iterations(people, case):
    soft = np.linspace(0, 1, case.width * case.height, dtype=np.float32).reshape(case.height, case.width)
    p1 = pseudolabel_update(case=case, soft_map=soft)
    p2 = pseudolabel_update(case=case, soft_map=soft)
    assert p2.pk == p1.pk and p2.iterations == 2
    back = pseudo_label_soft_map(pseudo=p2)
    assert np.abs(back - soft).max() <= 1 / 255 + 1e-6
    with pytest.raises(Exception, match="expected"):
        pseudolabel_update(case=case, soft_map=np.zeros((3, 3)))


def test_rgb_mask_any_channel_is_foreground(people, case):
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[0:4, 0:4, 1] = 7
    mv = mask_save(case=case, user=people.owner, png_bytes=png_bytes(rgb), base_version=None)
    assert mv.foreground == 16


def test_an_empty_proposal_is_a_state_with_its_probability_maximum(people, collab_client, case):
    """A proposal records that it is empty and its highest probability; the case and mask APIs expose both."""
    model = model_version_create(project=people.project, checkpoint=b"w")
    soft = np.full((case.height, case.width), 0.12, dtype=np.float32)
    soft[5, 7] = 0.41  # the model's best guess stays below the threshold: no mask pixel
    empty = mask_create_proposal(case=case, model_version=model, array=soft > 0.5, probabilities=soft)
    assert empty.is_empty is True and empty.prob_max == pytest.approx(0.41, abs=1 / 255)
    detail = collab_client.get(f"/api/cases/{case.pk}/").json()
    assert detail["head_mask"]["is_empty"] is True
    assert detail["head_mask"]["prob_max"] == pytest.approx(0.41, abs=1 / 255)

    found = proposal(case, people)  # 0.9 inside a box: a lesion
    assert found.is_empty is False and found.prob_max == pytest.approx(0.9)
    history = collab_client.get(f"/api/cases/{case.pk}/masks/").json()
    assert [(m["version"], m["is_empty"]) for m in history] == [(1, True), (2, False)]
    # a person's mask has no model map: emptiness from its pixels, no probability maximum
    r = collab_client.post(
        f"/api/cases/{case.pk}/masks/",
        {"mask": f(mask_png(box=(0, 0, 0, 0))), "base_version": 2},
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    assert r.json()["is_empty"] is True and r.json()["prob_max"] is None
