"""Upload decoding on real files: pydicom's bundled DICOM test files (CT, MR, compressed), PNG/JPEG/16-bit PNG,
and bad input (corrupt, truncated, oversized, unsupported codec, path-like names, zip slip)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from server.studio import imaging
from server.studio.imaging import ImageError, decode_upload
from tests.server.conftest import png_bytes


def _dicom(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    with open(path, "rb") as fh:
        return fh.read()


def _png(decoded) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(decoded.normalized_png)))


def test_ct_is_windowed_from_its_tags_and_deidentified():
    raw = _dicom("CT_small.dcm")
    original = pydicom.dcmread(io.BytesIO(raw))
    assert str(original.PatientName) and any(e.tag.is_private for e in original)
    decoded = decode_upload(raw, filename="CT_small.dcm")
    assert decoded.original_format == "dicom"
    assert (decoded.width, decoded.height) == (128, 128)
    assert decoded.meta["modality"] == "CT"
    image = _png(decoded)
    assert image.dtype == np.uint8 and image.shape == (128, 128)
    kept = pydicom.dcmread(io.BytesIO(decoded.original))
    assert "PatientName" not in kept and "PatientID" not in kept and "PatientBirthDate" not in kept
    assert not any(e.tag.is_private for e in kept)
    assert kept.PatientIdentityRemoved == "YES"
    assert kept.StudyInstanceUID != original.StudyInstanceUID and kept.SOPInstanceUID != original.SOPInstanceUID
    assert kept.file_meta.MediaStorageSOPInstanceUID == kept.SOPInstanceUID
    again = pydicom.dcmread(io.BytesIO(decode_upload(raw, filename="again.dcm").original))
    assert again.SeriesInstanceUID == kept.SeriesInstanceUID  # deterministic: a series still groups together
    assert bytes(str(original.PatientName), "ascii") not in decoded.original
    np.testing.assert_array_equal(kept.pixel_array, original.pixel_array)  # pixels untouched


def test_window_preset_and_monochrome1_inversion():
    raw = _dicom("CT_small.dcm")
    lung = _png(decode_upload(raw, filename="ct.dcm", window="lung"))
    bone = _png(decode_upload(raw, filename="ct.dcm", window="bone"))
    assert not np.array_equal(lung, bone)
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.PhotometricInterpretation = "MONOCHROME1"
    buf = io.BytesIO()
    ds.save_as(buf)
    inverted = _png(decode_upload(buf.getvalue(), filename="ct.dcm", window="lung"))
    np.testing.assert_array_equal(inverted, 255 - lung)
    with pytest.raises(ImageError, match="unknown window preset"):
        decode_upload(raw, filename="ct.dcm", window="sideways")


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_compressed_and_odd_dicom_variants_decode(name):
    decoded = decode_upload(_dicom(name), filename=name)
    ds = pydicom.dcmread(get_testdata_file(name))
    assert (decoded.height, decoded.width) == (ds.Rows, ds.Columns)
    assert _png(decoded).dtype == np.uint8
    assert "PatientName" not in pydicom.dcmread(io.BytesIO(decoded.original))


def test_lossless_variants_give_the_same_image():
    plain = _png(decode_upload(_dicom("MR_small.dcm"), filename="a.dcm"))
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        np.testing.assert_array_equal(_png(decode_upload(_dicom(name), filename="b.dcm")), plain)


def test_missing_codec_names_the_transfer_syntax():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder installed anywhere
    ds.PixelData = encapsulate([b"\x00" * 64])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    with pytest.raises(ImageError) as err:
        decode_upload(buf.getvalue(), filename="mpeg.dcm")
    assert "MPEG2" in str(err.value.detail)


def test_12_bit_jpeg_extended_decodes():
    """12-bit lossy JPEG (GDCM and Pillow refuse it, libjpeg is GPL-3) opens through the imagecodecs plugin."""
    decoded = decode_upload(_dicom("JPEG-lossy.dcm"), filename="lossy.dcm")
    assert decoded.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.51"
    assert _png(decoded).std() > 10


def test_truncated_dicom_and_dicom_without_pixels():
    raw = _dicom("CT_small.dcm")
    with pytest.raises(ImageError) as err:
        decode_upload(raw[: len(raw) // 2], filename="half.dcm")
    assert err.value.code in {"corrupt_image", "unsupported_codec"}
    with pytest.raises(ImageError, match="no image"):
        decode_upload(_dicom("rtplan.dcm"), filename="plan.dcm")
    with pytest.raises(ImageError, match="not a DICOM"):
        decode_upload(b"hello world", filename="fake.dcm")


def test_png_jpeg_and_16_bit_png():
    gray = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    decoded = decode_upload(png_bytes(gray), filename="a.png")
    assert decoded.original_format == "png" and decoded.channels == 1
    np.testing.assert_array_equal(_png(decoded), gray)
    buf = io.BytesIO()
    Image.fromarray(np.stack([gray] * 3, axis=2)).save(buf, format="JPEG")
    assert decode_upload(buf.getvalue(), filename="a.jpg").original_format == "jpeg"
    wide = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    decoded = decode_upload(buf.getvalue(), filename="deep.png")
    image = _png(decoded)
    assert image.min() == 0 and image.max() == 255 and decoded.meta["window"]["max"] == float(wide.max())


def test_corrupt_unsupported_and_oversized(settings):
    good = png_bytes(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
    with pytest.raises(ImageError) as err:
        decode_upload(good[: len(good) // 2], filename="cut.png")
    assert err.value.code == "corrupt_image"
    with pytest.raises(ImageError) as err:
        decode_upload(b"%PDF-1.4 not an image", filename="a.png")
    assert err.value.code == "unsupported_format"
    with pytest.raises(ImageError) as err:
        decode_upload(b"", filename="a.png")
    assert err.value.code == "empty_file"
    settings.LVIT_MAX_IMAGE_PIXELS = 1024
    with pytest.raises(ImageError) as err:
        decode_upload(good, filename="big.png")
    assert err.value.code == "image_too_large" and "1024" in str(err.value.detail)
    settings.LVIT_MAX_UPLOAD_BYTES = 100
    with pytest.raises(ImageError) as err:
        decode_upload(good, filename="big.png")
    assert err.value.code == "file_too_large"


def test_decompression_bomb_png_is_refused_before_decoding(settings):
    settings.LVIT_MAX_IMAGE_PIXELS = 10_000_000
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")  # 400 Mpx in a few kB
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageError) as err:
        decode_upload(buf.getvalue(), filename="bomb.png")
    assert err.value.code == "image_too_large"


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.png", "/etc/passwd.png", "a/b.png", "..", ".hidden.png", "a\\..\\b.png", "a\nb.png"]
)
def test_path_like_file_names_are_refused(name):
    with pytest.raises(ImageError):
        imaging.safe_filename(name)


def test_zip_slip_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/passwd.png", b"x")
    with pytest.raises(ImageError, match="parent paths"):
        imaging.open_zip(buf.getvalue())
    with pytest.raises(ImageError, match="not a valid zip"):
        imaging.open_zip(b"PK\x03\x04garbage")


def test_masks_must_match_the_image_size():
    mask = png_bytes(np.zeros((10, 20), np.uint8))
    with pytest.raises(ImageError) as err:
        imaging.decode_mask(mask, width=30, height=10)
    assert "expected 30x10" in str(err.value.detail)
    palette = Image.fromarray(np.eye(10, 20, dtype=np.uint8)).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    png, m = imaging.canonical_mask_png(buf.getvalue(), width=20, height=10)
    assert m.sum() == 10 and np.asarray(Image.open(io.BytesIO(png))).max() == 255
