import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  areaAt,
  heatmapRGBA,
  probabilityStats,
  proposalEmptiness,
  quantizedCut,
  thresholdMask,
} from "../../annotator_ui/static/annotator_ui/js/threshold.js";

describe("probability threshold", () => {
  const prob = Uint8Array.from([0, 50, 127, 128, 200, 255]);

  it("a pixel is in the mask when q / 255 >= t", () => {
    assert.equal(quantizedCut(0.5), 128);
    assert.equal(quantizedCut(0), 0);
    assert.equal(quantizedCut(1), 255);
    assert.equal(quantizedCut(200 / 255), 200, "exact quantized thresholds are inclusive");
    assert.deepEqual([...thresholdMask(prob, 0.5)], [0, 0, 0, 1, 1, 1]);
    assert.deepEqual([...thresholdMask(prob, 0.1)], [0, 1, 1, 1, 1, 1]);
    assert.throws(() => quantizedCut(1.5), RangeError);
  });

  it("the area at every threshold matches the thresholded mask", () => {
    const big = Uint8Array.from({ length: 5000 }, (_, i) => (i * 37) % 256);
    const stats = probabilityStats(big);
    for (const t of [0, 0.05, 0.3, 0.5, 0.77, 0.99, 1]) {
      const n = thresholdMask(big, t).reduce((a, b) => a + b, 0);
      assert.equal(areaAt(stats, t), n, `t=${t}`);
    }
    assert.equal(stats.max, 1);
    assert.equal(probabilityStats(Uint8Array.from([0, 51])).max, 0.2);
  });

  it("the heat map is transparent at zero and opaque-ish and red at one", () => {
    const rgba = heatmapRGBA(Uint8Array.from([0, 255]));
    assert.equal(rgba[3], 0);
    assert.deepEqual([...rgba.slice(4, 7)], [255, 0, 0]);
    assert.ok(rgba[7] > 200);
  });
});

describe("empty proposals", () => {
  it("uses the server's is_empty and prob_max when present", () => {
    assert.deepEqual(proposalEmptiness({ is_empty: true, prob_max: 0.31, foreground: 0 }), { empty: true, probMax: 0.31 });
    assert.deepEqual(proposalEmptiness({ is_empty: false, prob_max: 0.9, foreground: 0 }), { empty: false, probMax: 0.9 });
  });

  it("falls back to the foreground count and a loaded map's maximum", () => {
    assert.deepEqual(proposalEmptiness({ foreground: 0 }), { empty: true, probMax: null });
    assert.deepEqual(proposalEmptiness({ foreground: 12 }, { max: 0.8 }), { empty: false, probMax: 0.8 });
    assert.deepEqual(proposalEmptiness(null), { empty: null, probMax: null });
  });
});
