"""LViT report tables (``<Split>_text.xlsx|csv``, columns ``Image`` and ``Description``): one reader for the trainer
(:mod:`ml.data`) and the studio (dataset import, reports sent with an upload).

Only the standard library and openpyxl: the web process imports this without loading torch (``ml/__init__`` is
lazy). Reading rules: xlsx is the first sheet, csv is UTF-8 (a BOM is fine); rows without an Image are skipped, a
missing Description reads as ``""``.
"""

from __future__ import annotations

import csv
import io

TABLE_FORMATS = ("xlsx", "csv")


class DataError(ValueError):
    """A dataset folder or report table does not match the LViT layout (the message names the file)."""


def read_text_rows(data: bytes, fmt: str, *, where: str = "text table") -> list[tuple[str, str]]:
    """``[(Image, Description)]`` rows of an LViT text table (``xlsx``: first sheet; ``csv``: UTF-8), in file order.

    Rows without an Image value are skipped; a missing Description reads as ``""``. Raises :class:`DataError`
    naming ``where`` for an unsupported format, an unreadable or empty file and a header without the Image and
    Description columns.
    """
    if fmt not in TABLE_FORMATS:
        raise DataError(f"unsupported text table {where} (want .xlsx or .csv)")
    try:
        if fmt == "xlsx":
            import openpyxl

            wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                rows = [tuple(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
            finally:
                wb.close()
        else:
            rows = [tuple(r) for r in csv.reader(io.StringIO(data.decode("utf-8-sig")))]
    except Exception as exc:  # openpyxl/zipfile/csv/codecs raise many types on bad files
        raise DataError(f"cannot read {where}: {exc}") from None
    if not rows:
        raise DataError(f"empty text table: {where}")
    header = [str(c).strip() if c is not None else "" for c in rows[0]]
    if "Image" not in header or "Description" not in header:
        raise DataError(f"{where}: header must have columns Image and Description, got {header}")
    ki, di = header.index("Image"), header.index("Description")
    out = []
    for row in rows[1:]:
        if row is None or len(row) <= max(ki, di) or row[ki] is None or not str(row[ki]).strip():
            continue
        out.append((str(row[ki]).strip(), "" if row[di] is None else str(row[di])))
    return out


__all__ = ["TABLE_FORMATS", "DataError", "read_text_rows"]
