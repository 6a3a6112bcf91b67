"""A bounded pre-scan of a DICOM file's raw bytes, run before pydicom (whose reader and writer recurse once per
sequence level) touches them.

A 6.6 KB file of 300 nested sequence items grew a web process to 3.3 GB in pydicom's writer, 3,000 levels killed
it. :func:`dicom_check` walks the element headers with an explicit stack (no recursion, memory bounded by the depth
limit), skipping values, and refuses a file whose sequences nest deeper than ``LVIT_DICOM_MAX_DEPTH`` or that holds
more than ``LVIT_DICOM_MAX_ELEMENTS`` data elements, with :class:`DicomTooComplex` (400 ``dicom_too_complex``).

The scanner reads the framing pydicom reads: Part 10 files (preamble + ``DICM``, or the file meta group at byte 0),
explicit or implicit VR, little or big endian, the deflated syntax (inflated with a size bound), defined- and
undefined-length sequences and items, encapsulated pixel data. A truncated file is scanned as far as it goes
(pydicom then says what is missing); framing the scan cannot follow unambiguously (an item outside a sequence, an
undefined length in the file meta) is refused as ``corrupt_image`` rather than skipped.
"""

from __future__ import annotations

import struct
import zlib

from server.core.errors import ServiceError

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_ELEMENTS = 100_000

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
# Explicit VRs whose length field is 4 bytes (after 2 reserved bytes).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010


class DicomRefused(ServiceError):
    """The pre-scan refuses the file (a subclass says why)."""

    code = "corrupt_image"


class DicomTooComplex(DicomRefused):
    code = "dicom_too_complex"


class DicomMalformed(DicomRefused):
    """Framing the scan cannot follow unambiguously (so pydicom might read it differently): refused, not skipped."""

    code = "corrupt_image"


def limits() -> tuple[int, int]:
    """``(max sequence depth, max data elements)`` from the settings (or the environment), with defaults."""
    from server.config import setting_int

    return (
        setting_int("LVIT_DICOM_MAX_DEPTH", DEFAULT_MAX_DEPTH, 1),
        setting_int("LVIT_DICOM_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS, 1),
    )


def _implicit_is_sequence(tag: int, value: bytes) -> bool:
    """In implicit VR a defined-length value is a sequence when the dictionary says SQ, or (an unknown tag) when
    the value starts with an item tag, as pydicom infers."""
    try:
        from pydicom.datadict import dictionary_VR

        return dictionary_VR(tag) == "SQ"
    except (KeyError, ImportError):
        return len(value) >= 4 and value[:4] in (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00")


def _scan(data: bytes, start: int, *, little: bool, implicit: bool, max_depth: int, max_elements: int) -> int:
    """Walk the data set in ``data[start:]``; returns the number of elements seen (raises on a limit)."""
    end_all = len(data)
    tag_fmt = "<HHI" if little else ">HHI"
    u16, u32 = ("<H", "<I") if little else (">H", ">I")
    # Each open container: (kind, end offset or None for undefined length, is encapsulated pixel data, implicit VR
    # inside: a UN sequence holds implicit VR items, as pydicom reads it).
    stack: list[tuple[str, int | None, bool, bool]] = []
    pos, count = start, 0

    def depth() -> int:
        return sum(1 for entry in stack if entry[0] == "seq")

    while pos + 8 <= end_all:
        while stack and stack[-1][1] is not None and pos >= stack[-1][1]:
            stack.pop()
        if pos + 8 > end_all:
            break
        group, elem, length = struct.unpack_from(tag_fmt, data, pos)
        tag = (group << 16) | elem
        count += 1
        if count > max_elements:
            raise DicomTooComplex(
                f"the DICOM file holds more than {max_elements} data elements (the limit, LVIT_DICOM_MAX_ELEMENTS)"
            )
        if group == 0xFFFE:  # item, item delimiter, sequence delimiter: 4-byte length, no VR
            pos += 8
            if tag == _ITEM:
                if not stack or stack[-1][0] != "seq":
                    raise DicomMalformed(
                        f"the DICOM file is corrupt: a sequence item outside a sequence at byte {pos - 8}"
                    )
                if stack[-1][2]:  # a pixel data fragment: bytes, not a data set
                    pos += 0 if length == _UNDEFINED else length
                    continue
                stack.append(("item", None if length == _UNDEFINED else pos + length, False, stack[-1][3]))
            elif tag == _ITEM_END:
                if stack and stack[-1][0] == "item":
                    stack.pop()
            elif tag == _SEQ_END:
                if stack and stack[-1][0] == "item":
                    stack.pop()
                if stack and stack[-1][0] == "seq":
                    stack.pop()
            continue
        inner_implicit = stack[-1][3] if stack else implicit
        if inner_implicit:
            vr = None
            header = 8
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > end_all:
                    return count
                (length,) = struct.unpack_from(u32, data, pos + 8)
                header = 12
            else:
                (length,) = struct.unpack_from(u16, data, pos + 6)
                header = 8
        pos += header
        opens = False
        if length == _UNDEFINED:
            opens = True  # SQ, UN or encapsulated pixel data: items follow up to a sequence delimiter
        elif vr == b"SQ":
            opens = True
        elif vr is None or vr == b"UN":
            opens = _implicit_is_sequence(tag, data[pos : pos + min(length, 4)])
        if opens:
            end = None if length == _UNDEFINED else pos + length
            stack.append(("seq", end, tag == _PIXEL_DATA, inner_implicit or vr == b"UN"))
            if depth() > max_depth:
                raise DicomTooComplex(
                    f"the DICOM file nests sequences more than {max_depth} levels deep (the limit, "
                    "LVIT_DICOM_MAX_DEPTH); real images nest a few levels"
                )
        else:
            pos += length
    return count


def dicom_check(data: bytes, *, max_bytes: int | None = None) -> int:
    """Refuse (:class:`DicomTooComplex`) a DICOM file too deeply nested or with too many elements, before any
    recursive reader sees it, or (:class:`DicomMalformed`) one whose framing is ambiguous; returns the number of
    elements scanned."""
    max_depth, max_elements = limits()
    if len(data) >= 132 and data[128:132] == b"DICM":
        pos = 132
    elif len(data) >= 8 and data[:2] == b"\x02\x00":
        pos = 0  # file meta without a preamble
    else:  # a bare data set: pydicom assumes implicit VR little endian
        return _scan(data, 0, little=True, implicit=True, max_depth=max_depth, max_elements=max_elements)
    # The file meta group: always explicit VR little endian.
    syntax = _IMPLICIT_LE
    count = 0
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        elem = struct.unpack_from("<H", data, pos + 2)[0]
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                return count
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8
        if length == _UNDEFINED:
            raise DicomMalformed("the DICOM file is corrupt: an undefined length in its file meta information")
        if elem == 0x0010:
            syntax = data[pos : pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos += length
        count += 1
    if syntax in _DEFLATED:
        limit = max_bytes if max_bytes is not None else 64 * len(data) + 1024
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflater.decompress(data[pos:], limit)
        except zlib.error:
            return count
        if inflater.unconsumed_tail:
            raise DicomTooComplex(f"the deflated DICOM data set inflates to more than {limit} bytes")
        return count + _scan(body, 0, little=True, implicit=False, max_depth=max_depth, max_elements=max_elements)
    return count + _scan(
        data,
        pos,
        little=syntax != _EXPLICIT_BE,
        implicit=syntax == _IMPLICIT_LE,
        max_depth=max_depth,
        max_elements=max_elements,
    )
