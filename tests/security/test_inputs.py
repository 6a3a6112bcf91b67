"""Hardened inputs (issue 13 item 10): uploads reach only the Pillow plugins of accepted formats, and spreadsheets
are parsed with defusedxml (no entity declarations: no billion laughs, no entity expansion at all)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import (
    EpsImagePlugin,
    GifImagePlugin,
    Image,
    PcxImagePlugin,
    PpmImagePlugin,
    SgiImagePlugin,
    TgaImagePlugin,
)

from server.core.errors import ServiceError
from server.studio import imaging, reports
from server.studio.imaging import ImageError, decode_upload
from server.studio.models import Case
from tests.server.conftest import gray_image


def _saved(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)).save(buf, format=fmt, **kw)
    return buf.getvalue()


PLUGINS = {
    "SGI": SgiImagePlugin.SgiImageFile,
    "PCX": PcxImagePlugin.PcxImageFile,
    "PPM": PpmImagePlugin.PpmImageFile,
    "TGA": TgaImagePlugin.TgaImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "EPS": EpsImagePlugin.EpsImageFile,  # its load() runs Ghostscript where installed
}


@pytest.mark.parametrize("fmt", sorted(PLUGINS))
def test_other_formats_never_reach_their_pillow_plugin(fmt, monkeypatch, settings):
    data = _saved(fmt)
    plugin = PLUGINS[fmt]
    opened: list[str] = []
    original = plugin._open

    def spy(self):
        opened.append(fmt)
        return original(self)

    monkeypatch.setattr(plugin, "_open", spy)
    with pytest.raises(ImageError) as err:
        decode_upload(data, filename=f"scan.{fmt.lower()}")
    assert err.value.code == "unsupported_format"
    assert "PNG, JPEG, TIFF or DICOM" in str(err.value.detail)
    assert opened == [], f"the {fmt} plugin parsed an upload"


def test_masks_are_png_only():
    with pytest.raises(ImageError):
        imaging.decode_mask(_saved("BMP"), width=64, height=48)
    assert imaging.decode_mask(_saved("PNG"), width=64, height=48).shape == (48, 64)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_accepted_formats_still_decode(fmt):
    decoded = decode_upload(_saved(fmt), filename=f"scan.{fmt.lower()}")
    assert (decoded.width, decoded.height, decoded.original_format) == (64, 48, imaging.IMAGE_FORMATS[fmt])


def _xlsx_with_sheet(sheet_xml: str) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Image", "Description"])
    ws.append(["a.png", "placeholder"])
    buf = io.BytesIO()
    wb.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = sheet_xml.encode()
            dst.writestr(item, body)
    return out.getvalue()


def _sheet(doctype: str, cell: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>Image</t></is></c><c r="B1" t="inlineStr"><is><t>Description</t>'
        '</is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>a.png</t></is></c>'
        f'<c r="B2" t="inlineStr"><is><t>{cell}</t></is></c></row></sheetData></worksheet>'
    )


BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
    + "]>"
)


def test_plain_xlsx_still_reads():
    rows = reports.report_table_rows(_xlsx_with_sheet(_sheet("", "left lung")), "xlsx", where="r.xlsx")
    assert rows == [("a.png", "left lung")]


def test_xlsx_with_an_entity_declaration_is_refused():
    data = _xlsx_with_sheet(_sheet('<!DOCTYPE x [<!ENTITY who "injected text">]>', "&who;"))
    with pytest.raises(ServiceError) as err:
        reports.report_table_rows(data, "xlsx", where="reports.xlsx")
    assert err.value.code == "invalid_text_file" and "reports.xlsx" in str(err.value.detail)
    assert "declares a DTD or entities" in str(err.value.detail)  # defusedxml refused it


def test_xml_bomb_in_an_uploaded_reports_table_is_a_clean_400(owner_client, people, settings):
    bomb = _xlsx_with_sheet(_sheet(BILLION_LAUGHS, "&lol9;"))
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {
            "image": [SimpleUploadedFile("a.png", gray_image()), SimpleUploadedFile("b.png", gray_image(seed=1))],
            "reports": SimpleUploadedFile("reports.xlsx", bomb),
        },
        format="multipart",
    )
    assert r.status_code == 400, r.content[:500]
    assert r.json()["error"] == "invalid_text_file" and "declares a DTD or entities" in str(r.json()["detail"])
    assert len(r.content) < 2000 and Case.objects.count() == 0
