"""The synthetic phantom generator and the idempotent demo seed."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command

from server.studio import reports
from server.studio.demo import phantom, report_fields
from server.studio.management.commands.seed_demo import PROJECT_NAME
from server.studio.models import Case, CaseState, Project


def test_phantom_is_deterministic_and_lesions_sit_in_their_zones():
    a, b = phantom(7), phantom(7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    p = phantom(1, lesions=(("left", "upper"), ("right", "lower")))
    assert p.image.dtype == np.uint8 and p.image.shape == (256, 256)
    assert p.mask.any() and not (p.mask & ~(p.lungs["left"] | p.lungs["right"])).any()
    # lesions are brighter than the lung around them
    assert p.image[p.mask].mean() > p.image[p.lungs["left"] & ~p.mask].mean() + 30
    # the patient's left lung is on the image's right
    assert p.lungs["left"][:, 128:].sum() > p.lungs["left"][:, :128].sum()
    assert p.fields == {"laterality": "bilateral", "areas": "two", "left_zones": ["upper"], "right_zones": ["lower"]}


@pytest.mark.parametrize("seed", range(10))
def test_generated_reports_agree_with_the_masks(seed):
    p = phantom(seed, size=128)
    fields, text = reports.render(reports.seeded("lung-infection"), p.fields)
    assert reports.parse(reports.seeded("lung-infection"), text) == fields
    assert reports.inconsistency_score(fields, p.mask) == 0.0


def test_report_fields_and_bad_size():
    assert report_fields(()) == {"laterality": "none"}
    assert report_fields((("right", "middle"),))["laterality"] == "unilateral"
    with pytest.raises(ValueError):
        phantom(0, size=10)


def test_seed_demo_is_idempotent_and_labelled_synthetic(db, settings, tmp_path):
    call_command("seed_demo", "--count", "6", "--size", "96")
    call_command("seed_demo", "--count", "6", "--size", "96")
    project = Project.objects.get(name=PROJECT_NAME)
    assert "SYNTHETIC" in project.name and "SYNTHETIC" in project.description
    cases = Case.objects.filter(project=project)
    assert cases.count() == 6
    assert all(c.name.startswith("synthetic-") and c.meta["synthetic"] for c in cases)
    assert cases.filter(state=CaseState.LABELED).exists() and cases.filter(state=CaseState.UNLABELED).exists()
    assert {c.split for c in cases} == {"train", "val", "test"}
    assert all(c.report is not None for c in cases)
