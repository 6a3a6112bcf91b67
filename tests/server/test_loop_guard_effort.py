"""The model loop's trust pieces without a worker: the promotion guard's rules, the fixed validation set and its
versions, the effort record of an acceptance, and the metrics/report exports that carry them."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import timedelta

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile

from server.studio.models import AuditEvent, CaseOpen, ModelStatus, ModelVersion, Split, TrainingPolicy
from server.studio.services.cases import case_create
from server.studio.services.masks import mask_create_proposal
from server.studio.services.registry import model_version_create
from server.studio.services.training import promotion_decide, training_candidate_promote
from server.studio.services.validation import validation_set_for_round
from tests.server.conftest import gray_image, mask_png

GOOD = {
    "val_dice": 0.62,
    "validation_set": {"id": 1, "version": 1, "n": 4},
    "val_source": "val",
    "n_val_lesion": 4,
    "n_val_empty_on_lesion": 0,
    "empty_baseline_dice": 0.0,
}


def policy(**kw) -> TrainingPolicy:
    return TrainingPolicy(**{"promotion": "auto_if_better", "min_improvement": 0.02, "min_dice": 0.3, **kw})


def decide(metrics: dict, baseline: float | None = None, **kw) -> dict:
    return promotion_decide(metrics=metrics, baseline_dice=baseline, policy=policy(**kw), promotion="auto_if_better")


def test_the_guard_promotes_only_a_candidate_that_passes_every_check():
    first = decide(GOOD)
    assert first["promoted"] and first["reason"].startswith("promoted: first model")
    assert set(first["checks"]) == {"validation", "lesions", "floor", "empty_baseline"}
    better = decide(GOOD, baseline=0.55)
    assert better["promoted"] and "0.550 for the active model" in better["reason"]
    # beats the active model, but not by the stated margin (0.62 <= 0.61 + 0.02)
    close = decide(GOOD, baseline=0.61)
    assert not close["promoted"] and not close["checks"]["active"]["passed"]
    assert close["checks"]["active"]["threshold"] == 0.63


def test_the_guard_refuses_the_dice_zero_first_model_and_says_why():
    # The case that used to be auto-promoted as "first model": Dice 0, empty masks on every lesion.
    collapsed = {**GOOD, "val_dice": 0.0, "n_val_empty_on_lesion": 4}
    d = decide(collapsed)
    assert not d["promoted"]
    assert "predicts an empty mask on 4 of 4 validation cases with a lesion" in d["reason"]
    assert "floor 0.300" in d["reason"] and "0.000 for an empty mask" in d["reason"]
    # a floor of 0 does not let an empty-mask model through either
    assert not decide(collapsed, min_dice=0.0)["promoted"]
    # below the configurable floor, alone
    low = decide({**GOOD, "val_dice": 0.25})
    assert not low["promoted"] and [k for k, c in low["checks"].items() if not c["passed"]] == ["floor"]
    assert decide({**GOOD, "val_dice": 0.25}, min_dice=0.2)["promoted"]
    # no better than an empty mask (validation cases mostly without lesions)
    empty_wins = decide({**GOOD, "val_dice": 0.7, "empty_baseline_dice": 0.75})
    assert not empty_wins["promoted"] and not empty_wins["checks"]["empty_baseline"]["passed"]
    # scored on its own training cases
    assert not decide({**GOOD, "validation_set": None, "val_source": "train"})["promoted"]
    manual = promotion_decide(metrics=GOOD, baseline_dice=None, policy=policy(), promotion="manual")
    assert not manual["promoted"] and manual["checks"]["floor"]["passed"]


def test_a_refused_candidate_keeps_its_reason_and_an_admin_can_still_promote_it(people, owner_client):
    TrainingPolicy.objects.create(project=people.project, promotion="auto_if_better")
    mv = model_version_create(project=people.project, checkpoint=b"x", metrics={**GOOD, "val_dice": 0.1})
    decision = training_candidate_promote(candidate=mv, promotion=None, baseline=None, baseline_dice=None)
    assert not decision["promoted"]
    body = owner_client.get(f"/api/projects/{people.project.pk}/models/").json()[0]
    assert body["status"] == "candidate" and "floor 0.300" in body["promotion"]["reason"]
    assert body["promotion"]["checks"]["floor"] == {
        "passed": False,
        "value": 0.1,
        "threshold": 0.3,
        "text": "validation Dice 0.100 (floor 0.300)",
    }
    assert AuditEvent.objects.filter(action="model.kept_candidate").exists()
    r = owner_client.post(f"/api/models/{mv.pk}/activate/")
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert r.json()["promotion"]["by_hand"]["user"] == "owner"
    assert "floor" in r.json()["promotion"]["reason"]  # the round's decision stays next to the hand promotion


def test_policy_floor_through_the_api(people, owner_client, collab_client):
    url = f"/api/projects/{people.project.pk}/training-policy/"
    assert owner_client.get(url).json() == {"promotion": "auto_if_better", "min_improvement": 0.0, "min_dice": 0.3}
    r = owner_client.put(url, {"promotion": "auto_if_better", "min_dice": 0.45}, format="json")
    assert r.status_code == 200 and r.json()["min_dice"] == 0.45
    bad = owner_client.put(url, {"promotion": "auto_if_better", "min_dice": 1.5}, format="json")
    assert bad.status_code == 400 and "min_dice" in bad.json()["detail"]
    assert collab_client.put(url, {"promotion": "manual"}, format="json").status_code == 403


def _accepted(people, name: str, split: str):
    case = case_create(
        project=people.project,
        user=people.owner,
        data=gray_image(seed=len(name)),
        filename=f"{name}.png",
        split=split,
        report_text="Unilateral pulmonary infection, one infected area, lower right lung.",
    )
    client = people.client(people.owner)
    r = client.post(
        f"/api/cases/{case.pk}/accept/", {"mask": SimpleUploadedFile("m.png", mask_png())}, format="multipart"
    )
    assert r.status_code == 200, r.json()
    return case


def test_seeded_validation_set_is_frozen_and_versioned_only_when_val_cases_are_added(people):
    train = [_accepted(people, f"t{i}", Split.TRAIN) for i in range(10)]
    vs1 = validation_set_for_round(project=people.project, seed=7)
    assert vs1.version == 1 and vs1.source == "seeded" and vs1.seed == 7 and len(vs1.case_ids) == 2
    assert set(vs1.case_ids) <= {c.pk for c in train}
    # more accepted train cases: same set, same version (every version is scored on the same cases)
    _accepted(people, "t-late", Split.TRAIN)
    assert validation_set_for_round(project=people.project, seed=99).pk == vs1.pk
    # a reviewer adds validation cases: a new version with the old cases and the new ones
    new_val = _accepted(people, "v-new", Split.VAL)
    vs2 = validation_set_for_round(project=people.project, seed=7)
    assert vs2.version == 2 and vs2.case_ids == sorted([*vs1.case_ids, new_val.pk]) and vs2.added == [new_val.pk]
    # a case moved to test leaves the set (test is never validated or trained on)
    moved = vs1.case_ids[0]
    type(new_val).objects.filter(pk=moved).update(split=Split.TEST)
    vs3 = validation_set_for_round(project=people.project, seed=7)
    assert vs3.version == 3 and moved not in vs3.case_ids and vs3.removed == [moved]


def test_the_val_split_is_the_validation_set_when_it_has_accepted_cases(people):
    _accepted(people, "t0", Split.TRAIN)
    val = [_accepted(people, f"v{i}", Split.VAL) for i in range(2)]
    vs = validation_set_for_round(project=people.project)
    assert vs.source == "val" and vs.seed is None and vs.case_ids == [c.pk for c in val]


def test_effort_of_an_acceptance_from_first_open_to_accept(people, collab_client):
    case = case_create(
        project=people.project,
        user=people.owner,
        data=gray_image(),
        filename="scan.png",
        report_text="Unilateral pulmonary infection, one infected area, lower right lung.",
    )
    mv = model_version_create(project=people.project, checkpoint=b"m")
    ModelVersion.objects.filter(pk=mv.pk).update(status=ModelStatus.ACTIVE)
    proposal = np.zeros((48, 64), dtype=bool)
    proposal[10:20, 10:30] = True  # 200 pixels, the same box as mask_png()
    mask_create_proposal(case=case, model_version=mv, array=proposal)

    first = collab_client.post(f"/api/cases/{case.pk}/open/")
    assert first.status_code == 200
    again = collab_client.post(f"/api/cases/{case.pk}/open/")
    assert again.json()["opened_at"] == first.json()["opened_at"]  # the first open is kept
    CaseOpen.objects.filter(case=case).update(
        opened_at=CaseOpen.objects.get(case=case).opened_at - timedelta(seconds=42)
    )

    edited = np.zeros((48, 64), dtype=np.uint8)
    edited[10:20, 10:40] = 255  # 100 pixels added
    from tests.server.conftest import png_bytes

    r = collab_client.post(
        f"/api/cases/{case.pk}/accept/",
        {"mask": SimpleUploadedFile("m.png", png_bytes(edited)), "base_version": 1},
        format="multipart",
    )
    assert r.status_code == 200, r.json()
    effort = ModelVersion.objects.get(pk=mv.pk).masks.get(kind="proposal").children.get().stats["effort"]
    assert effort["proposal_version"] == 1 and effort["model_version"] == mv.pk
    assert (effort["added"], effort["removed"], effort["unchanged"]) == (100, 0, False)
    assert abs(effort["dice"] - 2 * 200 / (200 + 300)) < 1e-6
    assert 42 <= effort["seconds_to_accept"] < 120

    body = collab_client.get(f"/api/projects/{people.project.pk}/metrics/").json()
    [row] = body["models"]
    assert row["effort"]["n_accepted"] == 1 and row["effort"]["fraction_unchanged"] == 0.0
    assert row["effort"]["mean_dice"] == 0.8 and row["effort"]["median_seconds_to_accept"] >= 42
    assert body["effort"]["all"]["n_from_proposal"] == 1
    per_case = collab_client.get(f"/api/projects/{people.project.pk}/metrics/?format=effort-csv").content.decode()
    [line] = list(csv.DictReader(io.StringIO(per_case)))
    assert line["case"] == str(case.pk) and line["added"] == "100" and line["unchanged"] == "False"
    table = collab_client.get(f"/api/projects/{people.project.pk}/metrics/?format=csv").content.decode()
    [model_row] = list(csv.DictReader(io.StringIO(table)))
    assert model_row["effort.mean_dice"] == "0.8" and model_row["effort.fraction_unchanged"] == "0.0"

    report = collab_client.get(f"/api/projects/{people.project.pk}/export/?format=report")
    assert report.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(report.streaming_content))) as zf:
        assert sorted(zf.namelist()) == ["effort.csv", "metrics.json", "models.csv"]
        assert "effort.median_seconds_to_accept" in zf.read("models.csv").decode().splitlines()[0]


def test_open_is_for_members_only(people, outsider_client, case):
    assert outsider_client.post(f"/api/cases/{case.pk}/open/").status_code == 404
    assert not CaseOpen.objects.exists()


def test_a_project_with_validation_sets_and_versions_can_be_deleted(people):
    from server.studio.models import Project, ValidationSet

    vs = ValidationSet.objects.create(project=people.project, version=1, case_ids=[], source="val")
    model_version_create(project=people.project, checkpoint=b"x", validation_set=vs)
    people.project.delete()
    assert not ValidationSet.objects.exists() and not ModelVersion.objects.exists()
    assert not Project.objects.filter(pk=people.project.pk).exists()
