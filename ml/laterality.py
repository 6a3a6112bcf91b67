"""What a mirror does to a report: the one place that rewrites side and zone words for a geometric transform.

Augmentation must not contradict the text (docs/architecture.md, "Text-consistent augmentation"). The rule, for a
square image indexed ``(row, column)``:

- a **horizontal flip** (columns reversed) mirrors the patient's sides: ``left`` <-> ``right`` in the sentence.
  This holds for both conventions in our data: chest X-ray reports name the patient's sides (shown on the image's
  opposite side) and MoNuSeg's name the image's sides; a column flip exchanges either pair.
- a **vertical flip** (rows reversed) exchanges ``upper`` <-> ``lower`` (and ``top`` <-> ``bottom``); ``middle``
  stays.
- a **180° rotation** is both flips.
- a transform that **exchanges the axes** (a 90° or 270° rotation, a transpose, an anti-transpose) turns
  left/right into top/bottom, which no report sentence can say; text-consistent augmentation never draws one
  (see :func:`ml.data.draw_augmentation`).
- small rotations (±20°) keep sides and zones; the text stays.

The rewrite is template-aware: zone words stay in the template's order (``upper middle lower``) and a bilateral
lung report keeps the left lung first (``..., A left lung and B right lung.``), so a mirrored canonical sentence
is again the canonical sentence of the mirrored fields. Numpy-free and torch-free.
"""

from __future__ import annotations

import re

_SIDE = {"left": "right", "right": "left"}
_VERTICAL = {"upper": "lower", "lower": "upper", "top": "bottom", "bottom": "top"}
_ZONE_ORDER = {"upper": 0, "middle": 1, "lower": 2}
_WORD = re.compile(r"[A-Za-z]+")
_ZONE_RUN = re.compile(r"\b(?:upper|middle|lower)(?:\s+(?:upper|middle|lower))+\b", re.IGNORECASE)
# "<zones> right lung and <zones> left lung" -> the template renders the left lung first
_SWAPPED_BILATERAL = re.compile(
    r"(?P<a>(?:[A-Za-z]+ )+?)right lung and (?P<b>(?:[A-Za-z]+ )+?)left lung", re.IGNORECASE
)
_NEGATIVE = re.compile(r"^\s*no\b", re.IGNORECASE)


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _swap_words(sentence: str, table: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        word = m.group(0)
        other = table.get(word.lower())
        return word if other is None else _match_case(other, word)

    return _WORD.sub(sub, sentence)


def _order_zones(sentence: str) -> str:
    """Zone words in a run back into the template's order: ``lower middle upper`` -> ``upper middle lower``."""

    def sub(m: re.Match[str]) -> str:
        words = m.group(0).split()
        ordered = sorted((w.lower() for w in words), key=_ZONE_ORDER.__getitem__)
        return " ".join(_match_case(o, w) for o, w in zip(ordered, words, strict=True))

    return _ZONE_RUN.sub(sub, sentence)


def swap_sides(sentence: str) -> str:
    """The sentence for the horizontally mirrored image: ``left`` <-> ``right`` (any case), left lung first."""
    swapped = _swap_words(sentence, _SIDE)
    return _SWAPPED_BILATERAL.sub(lambda m: f"{m.group('b')}left lung and {m.group('a')}right lung", swapped)


def swap_vertical(sentence: str) -> str:
    """The sentence for the vertically mirrored image: ``upper`` <-> ``lower``, ``top`` <-> ``bottom``."""
    return _order_zones(_swap_words(sentence, _VERTICAL))


def mirror_sentence(sentence: str, *, flip_rows: bool, flip_cols: bool) -> str:
    """The sentence for an image whose rows (``flip_rows``) and/or columns (``flip_cols``) were reversed."""
    if flip_cols:
        sentence = swap_sides(sentence)
    if flip_rows:
        sentence = swap_vertical(sentence)
    return sentence


def is_negative(sentence: str) -> bool:
    """A report that says there is nothing to segment: it starts with the word "No" (every seeded template's
    negative form: "No pulmonary infection.", "No esophageal tumour."). Its LV-loss target is the empty mask."""
    return bool(_NEGATIVE.match(sentence))


__all__ = ["is_negative", "mirror_sentence", "swap_sides", "swap_vertical"]
