"""Structured reports: render template fields into the canonical sentence, and parse sentences back.

A template is data (``ReportTemplate.fields`` and ``.pattern``), so new templates need no code:

- field types: ``enum`` (one choice), ``multi`` (several choices, rendered in choice order with ``joiner``;
  choices listed in ``exclusive`` must stand alone), ``integer`` (``min``/``max``), ``text`` (free text);
- each choice has a ``value`` (stored) and a ``text`` (rendered), e.g. ``{"value": "two", "text": "two infected
  areas"}``, which keeps plurals out of the pattern language;
- ``pattern.alternatives``: the first alternative whose ``when`` matches the fields renders; ``{name}`` inserts a
  field, ``[...]`` is an optional segment dropped when a field inside it is empty; ``required`` lists fields that
  must be present, ``one_of`` groups of which exactly one must be present.

Parsing builds one regular expression per alternative, so every sentence the template can render parses back to the
same fields (``render(parse(s)) == s`` for canonical sentences).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.tables import DataError, read_text_rows
from ml.text import count_words
from ml.zones import ZONE_NAMES as ZONE_NAMES  # re-exported: callers import the geometry from here too
from ml.zones import body_box as body_box
from ml.zones import expected_cells, observed_cells
from server.core.errors import ServiceError

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class ReportError(ServiceError):
    code = "invalid_report"


@dataclass(frozen=True)
class Template:
    """The parts of a ``ReportTemplate`` row the engine needs (so tests and workers need no database)."""

    slug: str
    fields: list[dict]
    pattern: dict

    @classmethod
    def of(cls, row: Any) -> Template:
        return cls(slug=row.slug, fields=row.fields, pattern=row.pattern)

    def field(self, name: str) -> dict:
        for f in self.fields:
            if f["name"] == name:
                return f
        raise ReportError(f"unknown field {name!r}; this template has {[f['name'] for f in self.fields]}")


def _choice_values(field: dict) -> list[str]:
    return [c["value"] for c in field.get("choices", [])]


def _choice_text(field: dict, value: str) -> str:
    for c in field.get("choices", []):
        if c["value"] == value:
            return c.get("text", c["value"])
    raise ReportError({field["name"]: f"{value!r} is not one of {_choice_values(field)}"})


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


MAX_ECHOED = 10
MAX_ECHOED_NAME = 100


def normalize_fields(template: Template, fields: dict) -> dict:
    """Validate and canonicalize field values (choice order for multi, ints for integer); unknown names fail."""
    if not isinstance(fields, dict):
        raise ReportError("fields must be a JSON object mapping field names to values")
    known = {f["name"] for f in template.fields}
    unknown = sorted(set(fields) - known)
    if unknown:
        # name at most MAX_ECHOED of them, each cut short: a request with 100,000 keys must not get them all back
        detail = {
            str(name)[:MAX_ECHOED_NAME]: f"unknown field; this template has {sorted(known)}"
            for name in unknown[:MAX_ECHOED]
        }
        if len(unknown) > MAX_ECHOED:
            detail["..."] = f"and {len(unknown) - MAX_ECHOED} more unknown fields"
        raise ReportError(detail)
    out: dict[str, Any] = {}
    for f in template.fields:
        name, kind = f["name"], f["type"]
        value = fields.get(name)
        if _is_empty(value):
            continue
        if kind == "enum":
            if not isinstance(value, str):
                raise ReportError({name: f"expected one of {_choice_values(f)}"})
            _choice_text(f, value)
            out[name] = value
        elif kind == "multi":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ReportError({name: f"expected a list of values from {_choice_values(f)}"})
            for v in value:
                _choice_text(f, v)
            chosen = [v for v in _choice_values(f) if v in set(value)]
            exclusive = set(f.get("exclusive", []))
            if len(chosen) > 1 and exclusive & set(chosen):
                raise ReportError({name: f"{sorted(exclusive & set(chosen))} cannot be combined with other values"})
            out[name] = chosen
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ReportError({name: "expected an integer"})
            try:
                number = int(value)
            except ValueError:
                raise ReportError({name: f"expected an integer, got {value!r}"}) from None
            lo, hi = f.get("min"), f.get("max")
            if (lo is not None and number < lo) or (hi is not None and number > hi):
                raise ReportError({name: f"must be between {lo} and {hi}"})
            out[name] = number
        elif kind == "text":
            if not isinstance(value, str):
                raise ReportError({name: "expected a string"})
            text = " ".join(value.split())
            if len(text) > f.get("max_length", 4000):
                raise ReportError({name: f"longer than {f.get('max_length', 4000)} characters"})
            if text:
                out[name] = text
        else:  # a template bug, not user input
            raise ValueError(f"field {name!r} has unknown type {kind!r}")
    return out


def _when_matches(when: dict, fields: dict) -> bool:
    for name, expected in when.items():
        actual = fields.get(name)
        if isinstance(expected, list):
            if (actual or []) != expected:
                return False
        elif actual != expected:
            return False
    return True


def _select(template: Template, fields: dict) -> dict:
    for alt in template.pattern.get("alternatives", []):
        if _when_matches(alt.get("when", {}), fields):
            return alt
    raise ReportError(f"no sentence form of template {template.slug!r} fits fields {fields}")


def _format_value(field: dict, value: Any) -> str:
    if field["type"] == "enum":
        return _choice_text(field, value)
    if field["type"] == "multi":
        return field.get("joiner", " ").join(_choice_text(field, v) for v in value)
    return str(value)


def _segments(text: str) -> list[tuple[bool, str]]:
    """Split ``a[b]c`` into ``[(False, "a"), (True, "b"), (False, "c")]`` (optional segments do not nest)."""
    out, pos = [], 0
    for m in re.finditer(r"\[([^\[\]]*)\]", text):
        if m.start() > pos:
            out.append((False, text[pos : m.start()]))
        out.append((True, m.group(1)))
        pos = m.end()
    if pos < len(text):
        out.append((False, text[pos:]))
    return out


def _used_fields(alt: dict) -> set[str]:
    return set(_PLACEHOLDER.findall(alt["text"])) | set(alt.get("when", {}))


def _check_alternative(template: Template, alt: dict, fields: dict) -> None:
    missing = [n for n in alt.get("required", []) if _is_empty(fields.get(n))]
    if missing:
        raise ReportError({n: "required for this kind of report" for n in missing})
    for group in alt.get("one_of", []):
        present = [n for n in group if not _is_empty(fields.get(n))]
        if len(present) != 1:
            raise ReportError(f"exactly one of {group} must be given, got {present or 'none'}")


def render(template: Template, fields: dict) -> tuple[dict, str]:
    """Validate ``fields`` and return ``(canonical fields, sentence)``. Fields the chosen form does not use are
    dropped (e.g. zones when the report says there is no infection)."""
    fields = normalize_fields(template, fields)
    for f in template.fields:
        if f.get("required") and _is_empty(fields.get(f["name"])):
            raise ReportError({f["name"]: "this field is required"})
    alt = _select(template, fields)
    used = _used_fields(alt)
    fields = {k: v for k, v in fields.items() if k in used}
    _check_alternative(template, alt, fields)
    parts: list[str] = []
    for optional, seg in _segments(alt["text"]):
        names = _PLACEHOLDER.findall(seg)
        if optional and any(_is_empty(fields.get(n)) for n in names):
            continue
        missing = [n for n in names if _is_empty(fields.get(n))]
        if missing:
            raise ReportError({n: "required for this kind of report" for n in missing})
        parts.append(_PLACEHOLDER.sub(lambda m: _format_value(template.field(m.group(1)), fields[m.group(1)]), seg))
    return fields, "".join(parts)


def _field_regex(field: dict) -> str:
    name = field["name"]
    if field["type"] == "enum":
        texts = sorted((re.escape(c.get("text", c["value"])) for c in field["choices"]), key=len, reverse=True)
        return f"(?P<{name}>{'|'.join(texts)})"
    if field["type"] == "multi":
        texts = sorted((re.escape(c.get("text", c["value"])) for c in field["choices"]), key=len, reverse=True)
        one = f"(?:{'|'.join(texts)})"
        return f"(?P<{name}>{one}(?:{re.escape(field.get('joiner', ' '))}{one})*)"
    if field["type"] == "integer":
        return f"(?P<{name}>-?\\d+)"
    return f"(?P<{name}>.+?)"


def _alt_regex(template: Template, alt: dict) -> re.Pattern:
    out = []
    for optional, seg in _segments(alt["text"]):
        pieces, pos = [], 0
        for m in _PLACEHOLDER.finditer(seg):
            pieces.append(re.escape(seg[pos : m.start()]))
            pieces.append(_field_regex(template.field(m.group(1))))
            pos = m.end()
        pieces.append(re.escape(seg[pos:]))
        body = "".join(pieces)
        out.append(f"(?:{body})?" if optional else body)
    return re.compile("^" + "".join(out) + "$", re.DOTALL)


def _value_from_text(field: dict, text: str) -> Any:
    if field["type"] == "enum":
        return next(c["value"] for c in field["choices"] if c.get("text", c["value"]) == text)
    if field["type"] == "multi":
        by_text = {c.get("text", c["value"]): c["value"] for c in field["choices"]}
        texts = sorted(by_text, key=len, reverse=True)
        rx = re.compile("|".join(re.escape(t) for t in texts))
        return [by_text[m.group(0)] for m in rx.finditer(text)]
    if field["type"] == "integer":
        return int(text)
    return text


def parse(template: Template, sentence: str) -> dict | None:
    """Fields for ``sentence``, or ``None`` when no sentence form of the template matches."""
    sentence = " ".join(sentence.split())
    for alt in template.pattern.get("alternatives", []):
        m = _alt_regex(template, alt).match(sentence)
        if not m:
            continue
        fields: dict[str, Any] = dict(alt.get("when", {}))
        for name, text in m.groupdict().items():
            if text is not None:
                fields[name] = _value_from_text(template.field(name), text)
        try:
            fields, _ = render(template, fields)
        except ReportError:
            continue
        return fields
    return None


def report_from_input(template: Template, *, fields: dict | None, text: str | None) -> tuple[dict, str]:
    """Fields and sentence from either structured ``fields`` or a ``text`` sentence.

    Text that parses becomes structured; otherwise it is kept verbatim (fields ``{}``) so imported datasets with
    free-form text (MoNuSeg) round-trip exactly.
    """
    if fields:
        return render(template, fields)
    text = (text or "").strip()
    if not text:
        raise ReportError("give the report as `fields` (JSON) or as a `report` sentence")
    if len(text) > 4000:
        raise ReportError("the report sentence is longer than 4000 characters")
    parsed = parse(template, text)
    if parsed is not None:
        rendered = render(template, parsed)[1]
        if rendered == text:
            return parsed, rendered
    return {}, text


def _defused(exc: BaseException | None) -> bool:
    """Whether defusedxml (which openpyxl uses when installed) refused the XML somewhere in ``exc``'s chain."""
    from defusedxml import DefusedXmlException

    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, DefusedXmlException):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def longest_sentence(template: Template, *, limit: int = 200_000) -> str | None:
    """The sentence of ``template`` with the most words (as the text path counts them, ``ml.text.count_words``), or
    ``None`` when a free-text field leaves the length unbounded.

    Renders every combination of candidate values: per enum every choice, per multi every single choice and all
    non-exclusive choices together (more choices never render fewer words), per integer its bounds; each field may
    also be absent. ``None`` too when the combinations exceed ``limit``.
    """
    candidates: list[list[Any]] = []
    for f in template.fields:
        kind = f["type"]
        if kind == "text":
            return None
        if kind == "enum":
            options: list[Any] = _choice_values(f)
        elif kind == "multi":
            exclusive = set(f.get("exclusive", []))
            values = _choice_values(f)
            options = [[v] for v in values] + [[v for v in values if v not in exclusive]]
        elif kind == "integer":
            options = [v for v in (f.get("min"), f.get("max")) if v is not None] or [0]
        else:
            raise ValueError(f"field {f['name']!r} has unknown type {kind!r}")
        candidates.append([None, *options])
    if np.prod([len(c) for c in candidates], dtype=float) > limit:
        return None
    best: str | None = None
    for combo in itertools.product(*candidates):
        fields = {f["name"]: v for f, v in zip(template.fields, combo, strict=True) if v not in (None, [])}
        try:
            _, sentence = render(template, fields)
        except ReportError:
            continue
        if best is None or count_words(sentence) > count_words(best):
            best = sentence
    return best


def template_text_length(template: Template) -> int | None:
    """Words the text path needs to see every sentence ``template`` can produce (the app's text length), or
    ``None`` for free text (the caller then sizes it from the reports it has)."""
    sentence = longest_sentence(template)
    return None if sentence is None else count_words(sentence)


def report_table_rows(data: bytes, fmt: str, *, where: str) -> list[tuple[str, str]]:
    """``[(Image, Description)]`` rows of a reports table (LViT's ``*_text.csv|xlsx``, or a table of reports sent
    with an upload) in file order (``ml.tables.read_text_rows``, the trainer's reader), or 400 ``invalid_text_file``
    naming the file."""
    try:
        return read_text_rows(data, fmt, where=where)
    except DataError as exc:
        if _defused(exc):
            raise ServiceError(
                f"cannot read {where}: its XML declares a DTD or entities (refused: XML bombs and external entities "
                "hide there); save it again from a spreadsheet program",
                code="invalid_text_file",
            ) from None
        raise ServiceError(str(exc), code="invalid_text_file") from None


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def match_report_rows(
    image_names: list[str], rows: list[tuple[str, str]], *, where: str = "reports file"
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Assign the rows of a reports table (columns ``Image``, ``Description``) to uploaded images.

    A row's ``Image`` names the image's file name, the same stem with another extension (``scan.dcm`` for the
    stored ``scan.png``), or LViT's mask name (``mask_<stem>.png``). Returns ``{image name: description}`` and one
    error per row that names no uploaded image, names one ambiguously, or repeats an image: every row is used or
    reported, none is dropped silently.
    """
    by_name = {n: n for n in image_names}
    by_stem: dict[str, list[str]] = {}
    for n in image_names:
        by_stem.setdefault(_stem(n), []).append(n)
    out: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    for i, (key, description) in enumerate(rows, start=2):  # row 1 is the header
        key = key.strip()
        label = f"{where} row {i} ({key})"
        target = by_name.get(key)
        if target is None:
            stem = _stem(key)
            candidates = by_stem.get(stem) or (by_stem.get(stem[5:]) if stem.startswith("mask_") else None) or []
            if len(candidates) > 1:
                errors.append({"file": label, "error": f"matches several uploaded images: {sorted(candidates)}"})
                continue
            target = candidates[0] if candidates else None
        if target is None:
            errors.append({"file": label, "error": "names no uploaded image"})
        elif target in out:
            errors.append({"file": label, "error": f"a second report for {target}"})
        elif description.strip():
            out[target] = description
    return out, errors


# --- Seeded templates ------------------------------------------------------------------------------------------

_ZONES = [
    {"value": "upper", "text": "upper"},
    {"value": "middle", "text": "middle"},
    {"value": "lower", "text": "lower"},
    {"value": "all", "text": "all"},
]

LUNG_INFECTION = {
    "slug": "lung-infection",
    "name": "Lung infection (QaTa-COV19 / MosMedData+ style)",
    "description": (
        "Chest X-ray or CT: laterality, number of infected areas and the thirds of each lung they occupy. "
        "Left and right are the patient's sides (radiological display: the patient's left is the image's right). "
        "'all' means one area spanning the lung; several areas covering it are 'upper middle lower'."
    ),
    "fields": [
        {
            "name": "laterality",
            "type": "enum",
            "label": "Infection",
            "required": True,
            "choices": [
                {"value": "none", "text": "No"},
                {"value": "unilateral", "text": "Unilateral"},
                {"value": "bilateral", "text": "Bilateral"},
            ],
        },
        {
            "name": "areas",
            "type": "enum",
            "label": "Infected areas",
            "choices": [
                {"value": "one", "text": "one infected area"},
                {"value": "two", "text": "two infected areas"},
                {"value": "three", "text": "three infected areas"},
                {"value": "four", "text": "four infected areas"},
                {"value": "multiple", "text": "multiple infected areas"},
            ],
        },
        {"name": "left_zones", "type": "multi", "label": "Left lung", "choices": _ZONES, "exclusive": ["all"]},
        {"name": "right_zones", "type": "multi", "label": "Right lung", "choices": _ZONES, "exclusive": ["all"]},
    ],
    "pattern": {
        "alternatives": [
            {"when": {"laterality": "none"}, "text": "No pulmonary infection."},
            {
                "when": {"laterality": "bilateral"},
                "text": "Bilateral pulmonary infection, {areas}, {left_zones} left lung and {right_zones} right lung.",
                "required": ["areas", "left_zones", "right_zones"],
            },
            {
                "when": {"laterality": "unilateral"},
                "text": "Unilateral pulmonary infection, {areas}, [{left_zones} left lung][{right_zones} right lung].",
                "required": ["areas"],
                "one_of": [["left_zones", "right_zones"]],
            },
        ]
    },
}

ESOPHAGEAL_TUMOUR = {
    "slug": "esophageal-tumour",
    "name": "Esophageal tumour location (ESO-CT style)",
    "description": "CT: whether an esophageal tumour is seen, the segments it involves and optionally its length.",
    "fields": [
        {
            "name": "tumour",
            "type": "enum",
            "label": "Tumour",
            "required": True,
            "choices": [{"value": "absent", "text": "absent"}, {"value": "present", "text": "present"}],
        },
        {
            "name": "segments",
            "type": "multi",
            "label": "Segments",
            "joiner": " and ",
            "choices": [
                {"value": "cervical", "text": "cervical"},
                {"value": "upper_thoracic", "text": "upper thoracic"},
                {"value": "middle_thoracic", "text": "middle thoracic"},
                {"value": "lower_thoracic", "text": "lower thoracic"},
            ],
        },
        {"name": "length_mm", "type": "integer", "label": "Length (mm)", "min": 1, "max": 400},
    ],
    "pattern": {
        "alternatives": [
            {"when": {"tumour": "absent"}, "text": "No esophageal tumour."},
            {
                "when": {"tumour": "present"},
                "text": "Esophageal tumour in the {segments} esophagus[, about {length_mm} mm long].",
                "required": ["segments"],
            },
        ]
    },
}

FREE_TEXT = {
    "slug": "free-text",
    "name": "Free text",
    "description": "One free-text description per image (e.g. MoNuSeg's 'The nuclei density in the left is high.').",
    "fields": [{"name": "text", "type": "text", "label": "Description", "required": True, "max_length": 4000}],
    "pattern": {"alternatives": [{"text": "{text}"}]},
}

SEEDED_TEMPLATES = [LUNG_INFECTION, ESOPHAGEAL_TUMOUR, FREE_TEXT]


def seed_templates(model: Any = None) -> None:
    """Create or refresh the seeded templates. ``model`` is the migration's historical model, or the real one."""
    if model is None:
        from server.studio.models import ReportTemplate as model
    for spec in SEEDED_TEMPLATES:
        model.objects.update_or_create(
            slug=spec["slug"], defaults={k: spec[k] for k in ("name", "description", "fields", "pattern")}
        )


def seeded(slug: str) -> Template:
    spec = next(t for t in SEEDED_TEMPLATES if t["slug"] == slug)
    return Template(slug=spec["slug"], fields=spec["fields"], pattern=spec["pattern"])


# --- Report vs mask consistency (lung infection) -----------------------------------------------------------------


# The zone geometry (expected/observed cells, the body box) lives in ml/zones.py, shared with the zone-prior model;
# it imports only numpy, so the web process loads no torch for it.
def _cell_key(cell: tuple[str, str]) -> str:
    return f"{cell[0]} {cell[1]}"


def zone_summary(fields: dict, mask: Any, *, box: tuple[int, int, int, int] | None = None) -> dict | None:
    """Where a lung-infection report and a mask agree, by zone, or ``None`` for reports of other templates.

    ``{"score", "body_box", "expected", "observed", "disagree"}``: the inconsistency score (1 - Jaccard of the
    claimed and the observed cells), the box the grid was cut from (``[top, bottom, left, right]``), and the cells as
    ``"<side> <zone>"`` keys in the patient's terms (``"left upper"``), sorted. The editor's ``zones.js`` computes
    the same from the same box.
    """
    expected = expected_cells(fields)
    if expected is None:
        return None
    h, w = np.asarray(mask).shape[:2]
    used = tuple(box) if box else (0, h, 0, w)
    observed = observed_cells(mask, box=used)
    union = expected | observed
    score = 0.0 if not union else round(1.0 - len(expected & observed) / len(union), 4)
    return {
        "score": score,
        "body_box": [int(v) for v in used],
        "expected": sorted(map(_cell_key, expected)),
        "observed": sorted(map(_cell_key, observed)),
        "disagree": sorted(map(_cell_key, expected ^ observed)),
    }


def inconsistency_score(fields: dict, mask: Any, *, box: tuple[int, int, int, int] | None = None) -> float | None:
    """1 - Jaccard(claimed cells, observed cells): 0 when report and mask agree, 1 when disjoint. ``box`` is the
    body's bounding box (:func:`body_box` of the image) when known."""
    summary = zone_summary(fields, mask, box=box)
    return None if summary is None else summary["score"]
