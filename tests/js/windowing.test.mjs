import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { applyWindow, CT_PRESETS, greyToRGBA } from "../../annotator_ui/static/annotator_ui/js/windowing.js";

describe("window/level", () => {
  it("maps level ± width/2 to 0..255 and clamps outside", () => {
    const hu = Int16Array.from([-1000, -160, -120, 40, 240, 3000]);
    const out = applyWindow(hu, { width: 400, level: 40 }); // abdomen: -160..240 HU
    assert.deepEqual([...out.slice(0, 3)], [0, 0, 26]);
    assert.ok(Math.abs(out[3] - 127.5) <= 0.5, `centre maps to mid-grey, got ${out[3]}`);
    assert.deepEqual([...out.slice(4)], [255, 255]);
  });

  it("presets are valid and the lung window shows air dark and soft tissue bright", () => {
    for (const p of CT_PRESETS) assert.ok(p.width > 0, p.id);
    const lung = CT_PRESETS.find((p) => p.id === "lung");
    const [air, parenchyma, tissue] = applyWindow([-1000, -600, 40], lung);
    assert.ok(air < parenchyma && parenchyma < tissue);
    assert.throws(() => applyWindow([0], { width: 0, level: 0 }), RangeError);
  });

  it("grey to RGBA", () => {
    assert.deepEqual([...greyToRGBA(Uint8Array.from([7]))], [7, 7, 7, 255]);
  });
});
