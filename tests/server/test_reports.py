"""Report templates: every sentence of the real datasets parses into fields and re-renders identically."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from server.core.errors import ServiceError
from server.studio import reports
from server.studio.reports import ReportError, parse, render, seeded

LUNG = seeded("lung-infection")
ESO = seeded("esophageal-tumour")
FREE = seeded("free-text")


def _sentences(shared_data, dataset):
    for path in sorted((shared_data / dataset).glob("*_Folder/*_text.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                yield row["Description"]


@pytest.mark.parametrize("dataset", ["covid_ct", "covid_cxr"])
def test_every_dataset_sentence_parses_and_rerenders_identically(shared_data, dataset):
    sentences = list(_sentences(shared_data, dataset))
    assert len(sentences) >= 75
    for sentence in sentences:
        fields = parse(LUNG, sentence)
        assert fields is not None, sentence
        assert render(LUNG, fields)[1] == sentence


def test_lung_fields_are_structured():
    fields = parse(LUNG, "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.")
    assert fields == {"laterality": "bilateral", "areas": "two", "left_zones": ["upper"], "right_zones": ["lower"]}
    assert parse(LUNG, "No pulmonary infection.") == {"laterality": "none"}
    fields = parse(LUNG, "Unilateral pulmonary infection, one infected area, all right lung.")
    assert fields == {"laterality": "unilateral", "areas": "one", "right_zones": ["all"]}


def test_render_orders_zones_and_drops_unused_fields():
    fields, text = render(LUNG, {"laterality": "unilateral", "areas": "two", "left_zones": ["lower", "upper"]})
    assert text == "Unilateral pulmonary infection, two infected areas, upper lower left lung."
    fields, text = render(LUNG, {"laterality": "none", "areas": "two", "left_zones": ["upper"]})
    assert (fields, text) == ({"laterality": "none"}, "No pulmonary infection.")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"laterality": "sideways"}, "not one of"),
        ({"laterality": "bilateral", "areas": "two", "left_zones": ["upper"]}, "right_zones"),
        (
            {"laterality": "unilateral", "areas": "one", "left_zones": ["upper"], "right_zones": ["lower"]},
            "exactly one",
        ),
        (
            {"laterality": "bilateral", "areas": "two", "left_zones": ["all", "upper"], "right_zones": ["lower"]},
            "combined",
        ),
        ({"laterality": "bilateral", "colour": "red"}, "unknown field"),
        ({}, "required"),
    ],
)
def test_bad_fields_say_what_is_wrong(fields, message):
    with pytest.raises(ReportError) as err:
        render(LUNG, fields)
    assert message in str(err.value.detail)


def test_esophageal_template_with_integer_and_optional_segment():
    text = "Esophageal tumour in the middle thoracic and lower thoracic esophagus, about 45 mm long."
    fields = parse(ESO, text)
    assert fields == {"tumour": "present", "segments": ["middle_thoracic", "lower_thoracic"], "length_mm": 45}
    assert render(ESO, fields)[1] == text
    assert (
        render(ESO, {"tumour": "present", "segments": ["cervical"]})[1]
        == "Esophageal tumour in the cervical esophagus."
    )
    assert parse(ESO, "No esophageal tumour.") == {"tumour": "absent"}
    with pytest.raises(ReportError):
        render(ESO, {"tumour": "present", "segments": ["cervical"], "length_mm": 0})


def test_free_text_and_unparseable_text_is_kept_verbatim():
    assert reports.report_from_input(FREE, fields=None, text="The nuclei are evenly distributed.") == (
        {"text": "The nuclei are evenly distributed."},
        "The nuclei are evenly distributed.",
    )
    assert reports.report_from_input(LUNG, fields=None, text="Hazy opacity.") == ({}, "Hazy opacity.")
    with pytest.raises(ReportError):
        reports.report_from_input(LUNG, fields=None, text="   ")


def test_inconsistency_uses_radiological_display():
    mask = np.zeros((90, 100), dtype=bool)
    mask[60:90, 70:90] = True  # image's right half, lower third = patient's LEFT lower
    left_lower = {"laterality": "unilateral", "areas": "one", "left_zones": ["lower"]}
    right_lower = {"laterality": "unilateral", "areas": "one", "right_zones": ["lower"]}
    assert reports.inconsistency_score(left_lower, mask) == 0.0
    assert reports.inconsistency_score(right_lower, mask) == 1.0
    assert reports.inconsistency_score({"laterality": "none"}, np.zeros((9, 9), bool)) == 0.0
    assert reports.inconsistency_score({"text": "free"}, mask) is None


def _swap_sides(fields: dict) -> dict:
    out = dict(fields)
    out["left_zones"], out["right_zones"] = fields.get("right_zones"), fields.get("left_zones")
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("dataset", ["covid_ct", "covid_cxr"])
def test_inconsistency_separates_true_reports_from_side_swapped_ones(shared_data, dataset):
    """On expert masks with their own (rule-generated) reports the score is low; with left and right swapped in
    the report, unilateral cases score high. The image halves stand in for the lungs (no lung masks at runtime)."""
    from PIL import Image

    own, swapped = [], []
    for text_file in sorted((shared_data / dataset).glob("*_Folder/*_text.csv")):
        with text_file.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                mask = np.asarray(Image.open(text_file.parent / "labelcol" / row["Image"])) > 0
                fields = parse(LUNG, row["Description"])
                own.append(reports.inconsistency_score(fields, mask))
                if fields["laterality"] == "unilateral":
                    swapped.append(reports.inconsistency_score(_swap_sides(fields), mask))
    assert np.mean(own) < 0.15
    assert np.mean(swapped) > 0.8


def test_zone_summary_names_the_disagreeing_zones() -> None:
    mask = np.zeros((30, 30), bool)
    mask[2:8, 20:28] = True  # image right, top third: the patient's LEFT upper zone
    right_lower = {"laterality": "unilateral", "areas": "one", "right_zones": ["lower"]}
    summary = reports.zone_summary(right_lower, mask)
    assert summary == {
        "score": 1.0,
        "body_box": [0, 30, 0, 30],
        "expected": ["right lower"],
        "observed": ["left upper"],
        "disagree": ["left upper", "right lower"],
    }
    assert reports.inconsistency_score(right_lower, mask) == summary["score"]
    left_upper = {"laterality": "unilateral", "areas": "one", "left_zones": ["upper"]}
    assert reports.zone_summary(left_upper, mask, box=(0, 30, 0, 30))["disagree"] == []
    assert reports.zone_summary({"text": "free"}, mask) is None


def test_report_rows_match_images_by_name_stem_or_mask_name() -> None:
    images = ["ct-1.png", "ct-2.png", "scan.png", "a.png", "a.jpg"]
    rows = [
        ("ct-1.png", "No pulmonary infection."),
        ("mask_ct-2.png", "Two"),
        ("scan.dcm", "Three"),
        ("nobody.png", "Lost"),
        ("ct-1.png", "Again"),
        ("a.tif", "Which?"),
        ("a.png", "Exact wins"),
    ]
    found, errors = reports.match_report_rows(images, rows, where="r.csv")
    assert found == {
        "ct-1.png": "No pulmonary infection.",
        "ct-2.png": "Two",
        "scan.png": "Three",
        "a.png": "Exact wins",
    }
    assert errors == [
        {"file": "r.csv row 5 (nobody.png)", "error": "names no uploaded image"},
        {"file": "r.csv row 6 (ct-1.png)", "error": "a second report for ct-1.png"},
        {"file": "r.csv row 7 (a.tif)", "error": "matches several uploaded images: ['a.jpg', 'a.png']"},
    ]


def test_report_tables_read_like_the_trainer_reads_them(shared_data) -> None:
    """One reader (ml.tables) for the studio and the trainer: the studio's rows of every real table are the rows the
    trainer keys its samples by, bad files are a 400 invalid_text_file naming the file."""
    from ml.data import read_text_table

    tables = [*sorted(shared_data.glob("*/*_Folder/*_text.*")), shared_data / "lv_loss" / "LV_loss.xlsx"]
    assert {p.suffix for p in tables} == {".csv", ".xlsx"}
    for path in tables:
        rows = reports.report_table_rows(path.read_bytes(), path.suffix.lstrip("."), where=path.name)
        assert len(rows) >= 6 and {k: v.strip() for k, v in rows} == read_text_table(path)
    for data, fmt in ((b"", "csv"), (b"Name,Text\na,b\n", "csv"), (b"not a workbook", "xlsx"), (b"\xff\xfe", "csv")):
        with pytest.raises(ServiceError) as err:
            reports.report_table_rows(data, fmt, where="t.csv")
        assert err.value.code == "invalid_text_file" and "t.csv" in str(err.value.detail)
    bom = "\ufeffImage,Description\nmask_a.png,x\n,skipped\nb.png\n".encode()
    assert reports.report_table_rows(bom, "csv", where="t") == [
        ("mask_a.png", "x")
    ]  # a short row has no Description cell: skipped


def test_reading_reports_never_imports_torch() -> None:
    """The web process imports the studio's reports (tables, templates) without loading torch (seconds per worker)."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = (
        "import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'server.settings'); django.setup(); "
        "import server.studio.reports; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _lung_field_sets():
    zones = [["upper"], ["middle"], ["lower"], ["upper", "middle"], ["middle", "lower"], ["upper", "middle", "lower"]]
    zones.append(["all"])
    yield {"laterality": "none"}
    for areas in ("one", "two", "multiple"):
        for z in zones:
            yield {"laterality": "unilateral", "areas": areas, "left_zones": z}
            yield {"laterality": "unilateral", "areas": areas, "right_zones": z}
            for z2 in zones:
                yield {"laterality": "bilateral", "areas": areas, "left_zones": z, "right_zones": z2}


def _mirrored_fields(fields, *, flip_rows, flip_cols):
    swap = {"upper": "lower", "lower": "upper"}
    out = dict(fields)
    if flip_cols:
        out["left_zones"], out["right_zones"] = fields.get("right_zones"), fields.get("left_zones")
    for side in ("left_zones", "right_zones"):
        if flip_rows and out.get(side):
            out[side] = [swap.get(z, z) for z in out[side]]
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize(("flip_rows", "flip_cols"), [(False, True), (True, False), (True, True)])
def test_mirroring_a_canonical_sentence_gives_the_mirrored_reports_canonical_sentence(flip_rows, flip_cols):
    """ml.laterality (what augmentation does to the text) agrees with the template on every lung report."""
    from ml.laterality import mirror_sentence

    n = 0
    for fields in _lung_field_sets():
        _, sentence = render(LUNG, fields)
        _, expected = render(LUNG, _mirrored_fields(fields, flip_rows=flip_rows, flip_cols=flip_cols))
        assert mirror_sentence(sentence, flip_rows=flip_rows, flip_cols=flip_cols) == expected, fields
        n += 1
    assert n > 150


def test_template_text_length_covers_its_longest_sentence(shared_data) -> None:
    """The app's text length: every word of the longest sentence a template can render (so no bilateral report loses
    its right lung), none for free text, where the round's reports decide (at least the paper's 10)."""
    from types import SimpleNamespace

    from ml.data import read_text_table
    from ml.text import count_words
    from server.workers.pipeline import _app_text_length

    assert reports.template_text_length(LUNG) == 20 == count_words(reports.longest_sentence(LUNG))
    sentences = [s for p in shared_data.glob("covid_*/*_Folder/*_text.csv") for s in read_text_table(p).values()]
    assert len(sentences) > 100 and max(map(count_words, sentences)) <= 20  # every real chest report fits
    assert reports.template_text_length(ESO) >= count_words(
        render(ESO, {"tumour": "present", "segments": ["cervical"]})[1]
    )
    assert reports.template_text_length(FREE) is None

    def project(slug):
        t = seeded(slug)
        return SimpleNamespace(template=SimpleNamespace(slug=t.slug, fields=t.fields, pattern=t.pattern))

    short = [SimpleNamespace(sentence="One lesion.")]
    long = [SimpleNamespace(sentence=" ".join(["word"] * 30))]
    assert _app_text_length(project("lung-infection"), long) == 20
    assert _app_text_length(project("free-text"), short) == 10
    assert _app_text_length(project("free-text"), long) == 30
