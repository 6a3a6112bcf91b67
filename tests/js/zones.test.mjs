import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  bodyBox,
  describeCell,
  expectedCells,
  inconsistency,
  observedCells,
  resolveBox,
  zoneAgreement,
  zoneGrid,
} from "../../annotator_ui/static/annotator_ui/js/zones.js";

/** A w × h mask with the rectangle [x0, x1) × [y0, y1) set. */
function rect(w, h, x0, y0, x1, y1) {
  const m = new Uint8Array(w * h);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * w + x] = 1;
  return m;
}

describe("zone grid", () => {
  it("halves and thirds of the body box; the patient's right is the image's left", () => {
    const g = zoneGrid([10, 100, 20, 121]); // 90 rows, 101 columns
    assert.equal(g.midX, 20 + 50);
    assert.deepEqual(g.rowCuts, [40, 70]);
    const rightUpper = g.cells.find((c) => c.side === "right" && c.zone === "upper");
    assert.deepEqual([rightUpper.x, rightUpper.y, rightUpper.width, rightUpper.height], [20, 10, 50, 30]);
    const leftLower = g.cells.find((c) => c.side === "left" && c.zone === "lower");
    assert.deepEqual([leftLower.x, leftLower.y, leftLower.width, leftLower.height], [70, 70, 51, 30]);
  });

  it("body box: rows and columns with more than 1 % bright pixels", () => {
    const w = 50;
    const h = 40;
    const grey = new Uint8Array(w * h);
    for (let y = 5; y < 30; y++) for (let x = 8; x < 45; x++) grey[y * w + x] = 200;
    assert.deepEqual(bodyBox(grey, w, h), [5, 30, 8, 45]);
    assert.deepEqual(bodyBox(new Uint8Array(w * h), w, h), [0, h, 0, w], "a black image: the whole image");
    assert.deepEqual(resolveBox([0, 99, 0, 10], w, h), [0, h, 0, w], "a box outside the image is ignored");
  });
});

describe("report–mask agreement", () => {
  const w = 60;
  const h = 60;
  // Image-right upper third = the patient's LEFT upper zone.
  const leftUpper = rect(w, h, 35, 2, 55, 15);

  it("expected cells of a lung-infection report; null for other templates", () => {
    assert.deepEqual(
      [...expectedCells({ laterality: "bilateral", left_zones: ["upper"], right_zones: ["all"] })].sort(),
      ["left upper", "right lower", "right middle", "right upper"],
    );
    assert.deepEqual([...expectedCells({ laterality: "none" })], []);
    assert.equal(expectedCells({ text: "free" }), null);
  });

  it("observed cells follow radiological display", () => {
    assert.deepEqual([...observedCells(leftUpper, w, h)], ["left upper"]);
    assert.deepEqual([...observedCells(new Uint8Array(w * h), w, h)], []);
  });

  it("a small speck on the other side does not count unless it is the larger side", () => {
    const m = leftUpper.slice();
    m[50 * w + 5] = 1; // one pixel, patient's right lower: < 0.2 % of the image
    assert.deepEqual([...observedCells(m, w, h)], ["left upper"]);
    const speckOnly = new Uint8Array(w * h);
    speckOnly[50 * w + 5] = 1;
    assert.deepEqual([...observedCells(speckOnly, w, h)], ["right lower"]);
  });

  it("per-zone agreement names the disagreeing zone and scores like the server", () => {
    const report = { laterality: "unilateral", areas: "one", left_zones: ["upper"] };
    const ok = zoneAgreement(report, leftUpper, w, h);
    assert.equal(ok.applicable, true);
    assert.equal(ok.score, 0);
    assert.deepEqual(ok.disagree, []);
    const wrongSide = zoneAgreement({ laterality: "unilateral", areas: "one", right_zones: ["upper"] }, leftUpper, w, h);
    assert.equal(wrongSide.score, 1);
    assert.deepEqual(wrongSide.disagree.sort(), ["left upper", "right upper"]);
    const cell = wrongSide.cells.find((c) => c.key === "right upper");
    assert.equal(describeCell(cell), "right upper: report only");
    assert.equal(describeCell(wrongSide.cells.find((c) => c.key === "left upper")), "left upper: mask only");
    assert.equal(zoneAgreement({ text: "x" }, leftUpper, w, h).applicable, false);
    assert.equal(inconsistency(new Set(["a", "b", "c"]), new Set(["a"])), 0.6667);
  });

  it("uses the body box when given", () => {
    // A body box of the top 20 rows cuts the lesion (rows 2..14) into all three of its thirds.
    const inBox = zoneAgreement({ laterality: "none" }, leftUpper, w, h, { box: [0, 20, 0, 60] });
    assert.deepEqual(inBox.disagree.sort(), ["left lower", "left middle", "left upper"]);
    assert.deepEqual(inBox.box, [0, 20, 0, 60]);
  });
});

describe("worklist words", () => {
  it("say which zone disagrees and how", async () => {
    const { disagreementWords } = await import("../../annotator_ui/static/annotator_ui/js/zones.js");
    assert.deepEqual(
      disagreementWords({ expected: ["right lower"], observed: ["left upper"], disagree: ["right lower", "left upper"] }),
      ["R lower: report only", "L upper: mask only"],
    );
    assert.deepEqual(disagreementWords(null), []);
  });
});
