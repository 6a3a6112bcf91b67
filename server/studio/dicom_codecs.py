"""A pydicom decoding plugin for 12-bit JPEG Extended (Process 4) grey-scale images, through imagecodecs.

pydicom's GDCM and Pillow plugins decode JPEG Extended at 8 bits only, and its pylibjpeg route needs
pylibjpeg-libjpeg, which is GPL-3. imagecodecs (BSD-3-Clause) bundles libjpeg-turbo 3, which decodes 12-bit JPEG, so
12-bit lossy CT/MR/XA from older modalities still open. Registered once by :func:`register` (the studio app's
``ready``); the other syntaxes keep pydicom's own plugins (GDCM, pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle).
"""

from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np
from pydicom import uid
from pydicom.pixels.decoders import JPEGExtended12BitDecoder

PLUGIN = "imagecodecs-12bit"
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("imagecodecs",)}


def is_available(syntax: str) -> bool:
    return syntax == uid.JPEGExtended12Bit and bool(imagecodecs.JPEG8.available)


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """One frame's samples as little-endian bytes, as pydicom's decoders return them."""
    if runner.samples_per_pixel != 1 or runner.bits_stored <= 8:
        raise NotImplementedError("this plugin decodes 12-bit grey-scale JPEG Extended only")
    array = np.asarray(imagecodecs.jpeg8_decode(src))
    if array.ndim != 2:
        raise ValueError(f"expected one grey-scale plane, got shape {array.shape}")
    return array.astype("<u2", copy=False).tobytes()


def register() -> None:
    """Add the plugin to pydicom's JPEG Extended decoder (idempotent)."""
    if PLUGIN in JPEGExtended12BitDecoder._available or PLUGIN in JPEGExtended12BitDecoder._unavailable:
        return
    JPEGExtended12BitDecoder.add_plugin(PLUGIN, (__name__, "_decode_frame"))
