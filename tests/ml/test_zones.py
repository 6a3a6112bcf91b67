"""ml/zones.py: the report parser, the lung box estimate, the zone prior (side and mirror consistency), the
named-side fraction, and that importing it loads no torch (the server's web process uses it)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.laterality import swap_sides
from ml.zones import (
    ZONE_CHANNELS,
    box_iou,
    lung_box,
    named_side,
    parse_cells,
    pseudo_label_gate,
    render_prior,
    side_fraction,
    swap_cells,
    zone_prior,
)

REPO = Path(__file__).resolve().parents[2]
UNI_LEFT = "Unilateral pulmonary infection, one infected area, all left lung."
BILATERAL = "Bilateral pulmonary infection, two infected areas, middle lower left lung and upper right lung."


def test_parser_reads_the_template_forms() -> None:
    assert parse_cells(UNI_LEFT) == {("left", "upper"), ("left", "middle"), ("left", "lower")}
    assert parse_cells("Unilateral pulmonary infection, one infected area, lower right lung.") == {("right", "lower")}
    assert parse_cells(BILATERAL) == {("left", "middle"), ("left", "lower"), ("right", "upper")}
    assert parse_cells(
        "  bilateral  pulmonary infection, multiple infected areas, all left lung and all right lung"
    ) == {(s, z) for s in ("left", "right") for z in ("upper", "middle", "lower")}
    assert parse_cells("No pulmonary infection.") == set()  # negative: parsed, nothing claimed


@pytest.mark.parametrize(
    "free",
    ["", "The nuclei density in the left is high.", "Unilateral pulmonary infection, one infected area, left kidney."],
)
def test_parser_refuses_free_text(free: str) -> None:
    assert parse_cells(free) is None


def test_every_covid_cxr_sentence_parses(shared_data: Path) -> None:
    for split in ("Train", "Val"):
        with (shared_data / "covid_cxr" / f"{split}_Folder" / f"{split}_text.csv").open() as fh:
            for row in csv.DictReader(fh):
                assert parse_cells(row["Description"]) is not None, row["Description"]


def test_swap_sides_mirrors_the_claim_and_keeps_the_canonical_order() -> None:
    assert swap_sides(UNI_LEFT) == "Unilateral pulmonary infection, one infected area, all right lung."
    swapped = swap_sides(BILATERAL)
    assert swapped == "Bilateral pulmonary infection, two infected areas, upper left lung and middle lower right lung."
    assert parse_cells(swapped) == swap_cells(parse_cells(BILATERAL))
    assert swap_sides("The nuclei density in the Left is high.") == "The nuclei density in the Right is high."
    assert swap_sides("No pulmonary infection.") == "No pulmonary infection."


def test_prior_puts_the_patients_left_on_the_images_right() -> None:
    box = (0.0, 60.0, 0.0, 80.0)
    prior = render_prior(parse_cells(UNI_LEFT), (60, 80), box, softness=0.01)
    assert prior.shape == (ZONE_CHANNELS, 60, 80) and prior.dtype == np.float32
    zones = prior[0]
    assert zones[2:-2, 43:-2].min() > 0.9 and zones[:, :37].max() < 0.05  # patient's left = the image's right half
    assert prior.min() >= 0.0 and prior.max() <= 1.0
    lower_right = render_prior({("right", "lower")}, (60, 80), box, softness=0.01)[0]
    assert lower_right[43:-2, 2:37].min() > 0.9
    assert lower_right[:37].max() < 0.05 and lower_right[:, 43:].max() < 0.05


def test_prior_edges_are_soft_and_adjacent_zones_join() -> None:
    prior = render_prior({("left", "upper"), ("left", "middle")}, (90, 90), (0.0, 90.0, 0.0, 90.0), softness=0.05)[0]
    column = prior[:, 70]
    assert 0.95 < column[30] <= 1.0  # the border of two claimed thirds stays on
    edge = prior[60, 70]  # the border to the unclaimed lower third: half way
    assert 0.4 < edge < 0.6
    assert len(np.unique(np.round(column, 3))) > 5  # a ramp, not a step


def test_negative_and_unparsed_reports() -> None:
    box = (5.0, 55.0, 5.0, 75.0)
    negative = render_prior(set(), (60, 80), box)
    assert negative[0].max() == 0.0 and negative[1][30, 40] > 0.9  # lungs, nothing claimed
    assert not render_prior(None, (60, 80), box).any()  # free text: no prior at all


def test_pseudo_label_gate_keeps_claimed_zones_clears_negatives_and_passes_free_text() -> None:
    box = (5.0, 55.0, 5.0, 75.0)
    priors = np.stack(
        [
            render_prior(parse_cells(UNI_LEFT), (60, 80), box),  # the patient's left = the image's right half
            render_prior(set(), (60, 80), box),  # "No pulmonary infection.": lungs found, nothing claimed
            render_prior(None, (60, 80), box),  # free text: no prior at all
        ]
    )
    gate = pseudo_label_gate(priors)
    assert gate.shape == (3, 60, 80) and gate.dtype == np.float32
    assert np.array_equal(gate[0], priors[0, 0]) and gate[0][30, 60] > 0.9 and gate[0][30, 20] < 0.01
    assert not gate[1].any() and (gate[2] == 1.0).all()
    assert np.array_equal(pseudo_label_gate(priors[0]), gate[0])  # one prior, no batch axis
    with pytest.raises(ValueError, match="zone priors"):
        pseudo_label_gate(np.zeros((3, 60, 80)))


def test_prior_is_mirror_consistent() -> None:
    """The prior of a mirrored image with its report's sides swapped is the mirrored prior."""
    rng = np.random.default_rng(0)
    image = np.zeros((64, 96), np.uint8)
    image[4:60, 7:93] = rng.integers(60, 255, size=(56, 86))  # an off-centre body
    for sentence in (UNI_LEFT, BILATERAL, "No pulmonary infection."):
        prior = zone_prior(sentence, image)
        mirrored = zone_prior(swap_sides(sentence), image[:, ::-1])
        np.testing.assert_allclose(mirrored, prior[:, :, ::-1], atol=1e-5)


def test_lung_box_estimate_covers_the_real_lungs(shared_data: Path) -> None:
    """Against the union of the radiologists' lung masks (used only here, never by the model)."""
    folder = shared_data / "covid_cxr" / "Val_Folder"
    ious = []
    for path in sorted((folder / "img").iterdir()):
        image = np.asarray(Image.open(path).convert("L"))
        lungs = np.zeros(image.shape, bool)
        for side in ("left", "right"):
            lungs |= np.asarray(Image.open(folder / "lungs" / f"lung_{side}_{path.stem}.png").convert("L")) > 0
        ys, xs = np.nonzero(lungs)
        ious.append(box_iou(lung_box(image), (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)))
    assert np.median(ious) > 0.75 and min(ious) > 0.5


def test_side_fraction_and_named_side() -> None:
    mask = np.zeros((10, 20), bool)
    mask[:, 12:] = True  # image's right = patient's left
    mask[0, 0] = True
    assert side_fraction(mask, "left") == pytest.approx(80 / 81)
    assert side_fraction(mask, "right") == pytest.approx(1 / 81)
    assert side_fraction(np.zeros((4, 4)), "left") is None
    assert side_fraction(mask, "left", box=(0, 10, 0, 24)) == pytest.approx(80 / 81)  # midline 12
    assert side_fraction(mask, "left", box=(0, 10, 10, 20)) == pytest.approx(50 / 81)  # midline 15: 12..14 go right
    assert named_side(parse_cells(UNI_LEFT)) == "left"
    assert named_side(parse_cells(BILATERAL)) is None and named_side(set()) is None and named_side(None) is None


def test_importing_zones_and_the_report_module_loads_no_torch() -> None:
    code = (
        "import sys, ml.zones; assert 'torch' not in sys.modules, 'ml.zones'; "
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'server.settings'); django.setup(); "
        "import server.studio.reports; assert 'torch' not in sys.modules, 'reports'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)
