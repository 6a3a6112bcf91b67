"""The editor's live sentence preview (``report.js``) renders exactly what the server stores.

Runs the ES module in Node on every seeded template with valid and invalid field sets and compares with
``server/studio/reports.py: render`` (same sentence, same canonical fields, and an error where the server errs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from server.studio.reports import SEEDED_TEMPLATES, ReportError, Template, render

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = REPO_ROOT / "annotator_ui" / "static" / "annotator_ui" / "js" / "report.js"

CASES: dict[str, list[dict]] = {
    "lung-infection": [
        {"laterality": "none"},
        {"laterality": "none", "areas": "two", "left_zones": ["upper"]},
        {"laterality": "bilateral", "areas": "two", "left_zones": ["upper"], "right_zones": ["lower"]},
        {
            "laterality": "bilateral",
            "areas": "multiple",
            "left_zones": ["lower", "upper", "middle"],
            "right_zones": ["all"],
        },
        {"laterality": "unilateral", "areas": "one", "left_zones": ["lower"]},
        {"laterality": "unilateral", "areas": "one", "right_zones": ["middle", "upper"]},
        {"laterality": "unilateral", "areas": "one"},
        {"laterality": "unilateral", "areas": "one", "left_zones": ["lower"], "right_zones": ["lower"]},
        {"laterality": "bilateral", "areas": "two", "left_zones": ["all", "upper"], "right_zones": ["all"]},
        {"laterality": "bilateral", "areas": "two", "left_zones": ["upper"]},
        {"areas": "two"},
        {"laterality": "sideways"},
    ],
    "esophageal-tumour": [
        {"tumour": "absent"},
        {"tumour": "present", "segments": ["middle_thoracic"]},
        {"tumour": "present", "segments": ["lower_thoracic", "cervical"], "length_mm": 35},
        {"tumour": "present", "segments": ["cervical"], "length_mm": "12"},
        {"tumour": "present", "segments": ["cervical"], "length_mm": 0},
        {"tumour": "present"},
    ],
    "free-text": [
        {"text": "The nuclei density in the left is high."},
        {"text": "  spaced   out\ttext  "},
        {"text": ""},
    ],
}

NODE_SCRIPT = """
import { renderReport } from %s;
const input = JSON.parse(await new Promise((resolve) => {
  let data = "";
  process.stdin.on("data", (c) => (data += c));
  process.stdin.on("end", () => resolve(data));
}));
const out = input.map(({ template, fields }) => {
  try {
    const r = renderReport(template, fields);
    return { ok: true, text: r.text, fields: r.fields };
  } catch (e) {
    return { ok: false, error: e.message };
  }
});
console.log(JSON.stringify(out));
"""


def _python(template: Template, fields: dict) -> dict:
    try:
        canonical, text = render(template, fields)
    except ReportError:
        return {"ok": False}
    return {"ok": True, "text": text, "fields": canonical}


def test_report_preview_matches_the_server() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    inputs, expected = [], []
    for spec in SEEDED_TEMPLATES:
        template = Template(slug=spec["slug"], fields=spec["fields"], pattern=spec["pattern"])
        for fields in CASES[spec["slug"]]:
            inputs.append({"template": {"fields": spec["fields"], "pattern": spec["pattern"]}, "fields": fields})
            expected.append(_python(template, fields))
    script = NODE_SCRIPT % json.dumps(MODULE.as_uri())
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        input=json.dumps(inputs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = json.loads(result.stdout)
    assert len(got) == len(expected)
    for case, js, py in zip(inputs, got, expected, strict=True):
        assert js["ok"] == py["ok"], (case["fields"], js, py)
        if py["ok"]:
            assert (js["text"], js["fields"]) == (py["text"], py["fields"]), case["fields"]
    assert sum(e["ok"] for e in expected) >= 9 and sum(not e["ok"] for e in expected) >= 6
