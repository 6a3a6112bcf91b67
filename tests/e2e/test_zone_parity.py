"""The editor's lung-zone grid (``zones.js``) computes exactly what the server's inconsistency score computes.

Runs the ES module in Node on fixed masks (synthetic shapes at odd sizes, specks on the minority side, ties, and
the real COVID CT masks with the body boxes of their images) and compares with ``server/studio/reports.py``: the
body box, the observed cells, and the score for several lung-infection reports.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.studio.reports import body_box, expected_cells, inconsistency_score, observed_cells

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = REPO_ROOT / "annotator_ui" / "static" / "annotator_ui" / "js" / "zones.js"

REPORTS = [
    {"laterality": "none"},
    {"laterality": "unilateral", "areas": "one", "left_zones": ["upper"]},
    {"laterality": "unilateral", "areas": "two", "right_zones": ["middle", "lower"]},
    {"laterality": "bilateral", "areas": "multiple", "left_zones": ["all"], "right_zones": ["lower"]},
    {"text": "not a lung report"},
]

NODE_SCRIPT = """
import { bodyBox, expectedCells, observedCells, zoneAgreement } from %s;
const input = JSON.parse(await new Promise((resolve) => {
  let data = "";
  process.stdin.on("data", (c) => (data += c));
  process.stdin.on("end", () => resolve(data));
}));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
const out = input.cases.map(({ width, height, mask, grey, box }) => {
  const m = bytes(mask);
  const computedBox = grey ? bodyBox(bytes(grey), width, height) : null;
  const useBox = box ?? computedBox;
  return {
    box: computedBox,
    observed: [...observedCells(m, width, height, { box: useBox })].sort(),
    reports: input.reports.map((fields) => {
      const z = zoneAgreement(fields, m, width, height, { box: useBox });
      const exp = expectedCells(fields);
      return { score: z.score, expected: exp === null ? null : [...exp].sort(), disagree: [...z.disagree].sort() };
    }),
  };
});
console.log(JSON.stringify(out));
"""


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode()


def _keys(cells: set[tuple[str, str]]) -> list[str]:
    return sorted(f"{side} {zone}" for side, zone in cells)


def _synthetic() -> list[dict]:
    rng = np.random.default_rng(7)
    cases = []
    for h, w in [(61, 47), (64, 64), (100, 33), (9, 9), (128, 97)]:
        for _ in range(6):
            m = np.zeros((h, w), np.uint8)
            for _ in range(rng.integers(1, 4)):
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                m[y0 : y0 + rng.integers(1, h // 2 + 2), x0 : x0 + rng.integers(1, w // 2 + 2)] = 1
            if rng.random() < 0.4:  # a speck that is below min_side on its side
                m[rng.integers(0, h), rng.integers(0, w)] = 1
            box = None
            if rng.random() < 0.5:
                top, left = int(rng.integers(0, h // 4 + 1)), int(rng.integers(0, w // 4 + 1))
                box = [top, int(rng.integers(top + 1, h + 1)), left, int(rng.integers(left + 1, w + 1))]
            cases.append({"width": w, "height": h, "mask": m, "box": box})
    tie = np.zeros((30, 30), np.uint8)  # equal lesion on both sides: the patient's right counts as "most"
    tie[2, 2] = tie[2, 27] = 1
    cases.append({"width": 30, "height": 30, "mask": tie, "box": None})
    cases.append({"width": 12, "height": 12, "mask": np.zeros((12, 12), np.uint8), "box": None})
    return cases


def _real(shared_data: Path) -> list[dict]:
    root = shared_data / "covid_ct" / "Train_Folder"
    cases = []
    for stem in ("0", "1", "2", "10", "23", "41"):
        grey = np.array(Image.open(root / "img" / f"{stem}.png").convert("L"))
        mask = (np.array(Image.open(root / "labelcol" / f"mask_{stem}.png").convert("L")) > 127).astype(np.uint8)
        cases.append({"width": grey.shape[1], "height": grey.shape[0], "mask": mask, "grey": grey, "box": None})
    return cases


def test_zone_grid_matches_the_server(shared_data: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    cases = _synthetic() + _real(shared_data)
    payload = {
        "reports": REPORTS,
        "cases": [
            {
                "width": c["width"],
                "height": c["height"],
                "mask": _b64(c["mask"]),
                "grey": _b64(c["grey"]) if "grey" in c else None,
                "box": c["box"],
            }
            for c in cases
        ],
    }
    result = subprocess.run(
        [node, "--input-type=module", "-e", NODE_SCRIPT % json.dumps(MODULE.as_uri())],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(result.stdout)
    assert len(got) == len(cases)
    nonempty = 0
    for i, (case, js) in enumerate(zip(cases, got, strict=True)):
        box = case["box"]
        if "grey" in case:
            assert js["box"] == list(body_box(case["grey"])), f"case {i}: body box"
            box = list(body_box(case["grey"]))
        observed = observed_cells(case["mask"], box=tuple(box) if box else None)
        assert js["observed"] == _keys(observed), f"case {i}: observed cells"
        nonempty += bool(observed)
        for fields, r in zip(REPORTS, js["reports"], strict=True):
            expected = expected_cells(fields)
            assert r["expected"] == (None if expected is None else _keys(expected)), (i, fields)
            score = inconsistency_score(fields, case["mask"], box=tuple(box) if box else None)
            assert r["score"] == score, (i, fields, r["score"], score)
            if expected is not None:
                assert r["disagree"] == _keys(expected ^ observed), (i, fields)
    assert nonempty >= 25, "the fixture must exercise non-empty masks"
