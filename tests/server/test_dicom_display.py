"""DICOM display as the modality intends (VOI LUT Sequence, VOILUTFunction, palette colour, multi-frame) and the
runtime decoders for compressed transfer syntaxes, checked without the GPL-3 libjpeg plugin."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import call_command
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_windowing

from server.studio.imaging import decode_upload
from server.studio.services.cases import case_create
from server.studio.services.common import written_files
from tests.support import dicom_studies as studies

REPO = Path(__file__).resolve().parents[2]
PATIENT = studies.Patient("P-1", "Test^Pat", "19800101", "F", "A-1", "20240101", "test")


def _png(decoded) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(decoded.normalized_png)))


@pytest.fixture(scope="module")
def film(shared_data) -> np.ndarray:
    return studies.read_gray(sorted((shared_data / "covid_cxr" / "Train_Folder" / "img").glob("*.png"))[0])


def test_voi_lut_sequence_restores_a_film_that_min_max_washes_out(film):
    raw = studies.to_bytes(studies.cxr_dx(film, PATIENT))
    decoded = decode_upload(raw, filename="dx.dcm")
    assert decoded.meta["window"]["source"] == "voi_lut"
    inner = (slice(6, -6), slice(None))  # inside the collimator border
    with_lut = _png(decoded)[inner].astype(int)
    ds = pydicom.dcmread(io.BytesIO(raw))
    del ds.VOILUTSequence
    without = decode_upload(studies.to_bytes(ds), filename="dx.dcm")
    assert without.meta["window"]["source"] == "range"
    min_max = _png(without)[inner].astype(int)
    source = film[inner].astype(int)
    # the LUT's mild gamma keeps the film within a few grey levels; min-max squeezes it into about 50 of 256 levels
    assert np.abs(with_lut - source).mean() < 10
    assert np.abs(min_max - source).mean() > 30
    assert with_lut.max() - with_lut.min() > 200 > 60 > min_max.max() - min_max.min()


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_follows_voi_lut_function(function):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
    buf = io.BytesIO()
    ds.save_as(buf)
    decoded = decode_upload(buf.getvalue(), filename="ct.dcm")
    assert decoded.meta["window"] == {"center": 40.0, "width": 400.0, "function": function, "source": "tags"}
    values = apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds)
    lo, hi = -(2**15) * 1.0 + float(ds.RescaleIntercept), (2**15 - 1) * 1.0 + float(ds.RescaleIntercept)
    if ds.PixelRepresentation == 0:
        lo, hi = float(ds.RescaleIntercept), (2**ds.BitsStored - 1) + float(ds.RescaleIntercept)
    expected = np.clip(np.rint((values - lo) * 255.0 / (hi - lo)), 0, 255)
    np.testing.assert_array_equal(_png(decoded), expected.astype(np.uint8))


def test_sigmoid_and_linear_give_different_pictures():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = {}
    for function in ("LINEAR", "SIGMOID"):
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
        buf = io.BytesIO()
        ds.save_as(buf)
        out[function] = _png(decode_upload(buf.getvalue(), filename="ct.dcm")).astype(int)
    body = out["LINEAR"] > 0
    assert np.abs(out["LINEAR"] - out["SIGMOID"])[body].mean() > 5


def test_palette_colour_becomes_rgb_through_its_palette():
    raw = Path(get_testdata_file("examples_palette.dcm")).read_bytes()
    decoded = decode_upload(raw, filename="palette.dcm")
    assert decoded.channels == 3 and decoded.meta["window"] == {"source": "palette"}
    ds = pydicom.dcmread(io.BytesIO(raw))
    rgb = apply_color_lut(ds.pixel_array, ds)
    expected = np.clip(np.rint(rgb / 257.0), 0, 255).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
    np.testing.assert_array_equal(_png(decoded), expected)
    assert len(np.unique(_png(decoded).reshape(-1, 3), axis=0)) > 20  # colour, not grey


def test_multi_frame_keeps_the_middle_frame_and_says_which(shared_data):
    paths = sorted((shared_data / "covid_ct" / "Train_Folder" / "img").glob("*.png"))[:3]
    frames = [studies.read_gray(p) for p in paths]
    ds = studies.multiframe_sc(frames, PATIENT)
    decoded = decode_upload(studies.to_bytes(ds), filename="mf.dcm")
    assert (decoded.meta["frames"], decoded.meta["frame"]) == (3, 1)
    h, w = ds.Rows, ds.Columns
    middle = frames[1][:h, :w].astype(float)
    lo, hi = middle.min(), middle.max()
    np.testing.assert_array_equal(_png(decoded), np.rint((middle - lo) * 255 / (hi - lo)).astype(np.uint8))


DECODE_WITHOUT_LIBJPEG = """
import importlib.metadata as metadata, sys
sys.modules["libjpeg"] = None  # pylibjpeg-libjpeg (GPL-3) cannot be imported
_entry_points = metadata.entry_points
def entry_points(**kwargs):
    found = _entry_points(**kwargs)
    if "group" in kwargs:  # hide its pylibjpeg plugin entry points too
        return metadata.EntryPoints(e for e in found if not e.value.startswith("libjpeg"))
    return found
metadata.entry_points = entry_points
import django, io, json
django.setup()
import numpy as np
from PIL import Image
from server.studio.services.cases import case_create
from server.studio.imaging import decode_upload
from server.studio.services.common import written_files
out = {}
for path in sys.argv[1:]:
    decoded = decode_upload(open(path, "rb").read(), filename="x.dcm")
    out[path] = np.asarray(Image.open(io.BytesIO(decoded.normalized_png))).tolist()
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLosslessSV1
assert "pylibjpeg" not in get_decoder(JPEGLosslessSV1).available_plugins, "libjpeg still reachable"
print(json.dumps(out))
"""


def test_compressed_syntaxes_decode_with_the_runtime_decoders_only(shared_data, tmp_path):
    """JPEG Baseline, JPEG Extended, JPEG Lossless, JPEG-LS and JPEG 2000 decode in a process where the GPL-3
    libjpeg plugin cannot be imported: what requirements.txt installs is enough."""
    requirements = (REPO / "requirements.txt").read_text()
    assert "pylibjpeg-libjpeg" not in requirements.replace("Not pylibjpeg-libjpeg", "")
    image = studies.even(studies.read_gray(sorted((shared_data / "covid_ct" / "Train_Folder" / "img").glob("*"))[0]))
    plain = studies.to_bytes(studies.ct_sc(image, PATIENT))
    reference = _png(decode_upload(plain, filename="plain.dcm")).astype(int)
    files = {}
    for syntax in studies.COMPRESSED_SYNTAXES:
        path = tmp_path / f"{syntax}.dcm"
        path.write_bytes(studies.compressed(plain, syntax))
        files[str(path)] = syntax
    extended = tmp_path / "extended.dcm"
    extended.write_bytes(Path(get_testdata_file("JPGExtended.dcm")).read_bytes())
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "server.settings", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", DECODE_WITHOUT_LIBJPEG, *files, str(extended)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    decoded = json.loads(run.stdout.strip().splitlines()[-1])
    for path, syntax in files.items():
        diff = np.abs(np.asarray(decoded[path]) - reference).max()
        assert diff <= (12 if syntax == pydicom.uid.JPEGBaseline8Bit else 0), syntax
    ours = np.asarray(
        decoded[str(extended)]
    )  # 12-bit JPEG Extended: the imagecodecs plugin (server/studio/dicom_codecs)
    expected = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    assert ours.shape == (expected.Rows, expected.Columns) and ours.std() > 10


def test_redecode_brings_an_old_dicom_case_to_the_current_rules(people, film):
    """A DX case stored with the old min-max picture is re-derived from its original: a dry run counts it, --apply
    stores the VOI LUT picture, and a second run finds nothing to change."""
    raw = studies.to_bytes(studies.cxr_dx(film, PATIENT))
    case = case_create(project=people.project, user=people.owner, data=raw, filename="film.dcm")
    voi_png = case.image.open("rb").read()
    ds = pydicom.dcmread(io.BytesIO(raw))
    del ds.VOILUTSequence
    old_png = decode_upload(studies.to_bytes(ds), filename="old.dcm").normalized_png
    with written_files() as janitor:
        janitor.save(case.image, "image.png", old_png)  # as an upload before VOI LUTs were applied
    case.save(update_fields=["image"])
    out = io.StringIO()
    call_command("redecode_dicom", project=people.project.pk, stdout=out)
    assert f"1 would change: [{case.pk}]" in out.getvalue()
    case.refresh_from_db()
    assert case.image.open("rb").read() == old_png  # a dry run changes nothing
    call_command("redecode_dicom", project=people.project.pk, apply=True, stdout=out)
    case.refresh_from_db()
    assert case.image.open("rb").read() == voi_png and case.meta["window"]["source"] == "voi_lut"
    again = io.StringIO()
    call_command("redecode_dicom", project=people.project.pk, stdout=again)
    assert "0 would change" in again.getvalue()
