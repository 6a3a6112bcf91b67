import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  applyWindow,
  autoWindow,
  baseWindow,
  CT_PRESETS,
  DOMAIN,
  dragWindow,
  fromBrightnessContrast,
  greyToRGBA,
  hasWindowableValues,
  isIdentity,
  presetWindow,
  quantiles,
  restoreDisplay,
  rgbaMean,
  toBrightnessContrast,
  windowLUT,
  windowRGBA,
} from "../../annotator_ui/static/annotator_ui/js/windowing.js";

describe("window/level", () => {
  it("maps level ± width/2 to 0..255 and clamps outside", () => {
    const hu = Int16Array.from([-1000, -160, -120, 40, 240, 3000]);
    const out = applyWindow(hu, { width: 400, level: 40 }); // abdomen: -160..240 HU
    assert.deepEqual([...out.slice(0, 3)], [0, 0, 26]);
    assert.ok(Math.abs(out[3] - 127.5) <= 0.5, `centre maps to mid-grey, got ${out[3]}`);
    assert.deepEqual([...out.slice(4)], [255, 255]);
  });

  it("invert flips black and white", () => {
    const plain = applyWindow([-160, 0, 240], { width: 400, level: 40 });
    const inv = applyWindow([-160, 0, 240], { width: 400, level: 40, invert: true });
    assert.deepEqual([...inv], [...plain].map((v) => 255 - v));
  });

  it("presets are valid and the lung window shows air dark and soft tissue bright", () => {
    for (const p of CT_PRESETS) assert.ok(p.width > 0, p.id);
    const lung = CT_PRESETS.find((p) => p.id === "lung");
    const [air, parenchyma, tissue] = applyWindow([-1000, -600, 40], lung);
    assert.ok(air < parenchyma && parenchyma < tissue);
    assert.throws(() => applyWindow([0], { width: 0, level: 0 }), RangeError);
  });

  it("grey to RGBA and the channel mean", () => {
    assert.deepEqual([...greyToRGBA(Uint8Array.from([7]))], [7, 7, 7, 255]);
    assert.deepEqual([...rgbaMean(Uint8Array.from([10, 20, 31, 255]))], [61 / 3].map(Math.fround));
  });
});

describe("8-bit scans (PNG/JPEG)", () => {
  it("the full-range window is the identity; a detail window stretches half the range", () => {
    const lut = windowLUT({ width: 255, level: 127.5 });
    for (let i = 0; i < 256; i++) assert.equal(lut[i], i);
    assert.ok(isIdentity({ width: 255, level: 127.5, invert: false }));
    assert.ok(!isIdentity({ width: 255, level: 127.5, invert: true }));
    const dark = windowLUT(presetWindow("dark", DOMAIN.GREY)); // 0..127 over the whole display
    assert.equal(dark[0], 0);
    assert.equal(dark[127], 255);
    assert.equal(dark[200], 255);
    assert.ok(Math.abs(dark[64] - 128) <= 1, `64 becomes mid-grey, got ${dark[64]}`);
  });

  it("windows colour scans per channel and keeps alpha", () => {
    const rgba = Uint8Array.from([0, 64, 127, 200]);
    const out = windowRGBA(rgba, { width: 127, level: 63.5 });
    assert.deepEqual([...out], [0, 129, 255, 200]);
    const inv = windowRGBA(rgba, { width: 255, level: 127.5, invert: true });
    assert.deepEqual([...inv], [255, 191, 128, 200]);
  });

  it("auto contrast spans the 1st..99th percentile of a faint scan", () => {
    // A washed-out X-ray: every value between 100 and 140.
    const values = Uint8Array.from({ length: 10_000 }, (_, i) => 100 + (i % 41));
    const [lo, hi] = quantiles(values);
    assert.ok(lo >= 100 && lo <= 101 && hi >= 139 && hi <= 140, `${lo} ${hi}`);
    const win = autoWindow(values);
    const lut = windowLUT(win);
    assert.ok(lut[100] <= 5 && lut[140] >= 250, `${lut[100]} ${lut[140]}`);
    assert.equal(autoWindow(new Uint8Array(100).fill(9)).width, 2, "a flat image still gets a valid window");
  });
});

describe("drag, brightness/contrast, base and restore", () => {
  const base = { width: 255, level: 127.5 };

  it("right widens, left narrows (never below the minimum), up brightens", () => {
    const start = { width: 100, level: 120 };
    assert.deepEqual(dragWindow(start, 400, 0), { width: 355, level: 120 });
    assert.equal(dragWindow(start, -1000, 0).width, 2);
    const up = dragWindow(start, 0, -40);
    assert.ok(up.level < start.level);
    const hu = dragWindow({ width: 400, level: 40 }, 100, 0, { span: 1500, domain: DOMAIN.HU });
    assert.equal(hu.width, 400 + 375);
  });

  it("brightness/contrast round-trips through window/level", () => {
    assert.deepEqual(toBrightnessContrast(base, base), { brightness: 0, contrast: -0 });
    for (const bc of [
      { brightness: 40, contrast: 0 },
      { brightness: -25, contrast: 60 },
      { brightness: 100, contrast: -100 },
    ]) {
      const win = fromBrightnessContrast(bc, base);
      const back = toBrightnessContrast(win, base);
      assert.ok(Math.abs(back.brightness - bc.brightness) < 1e-9 && Math.abs(back.contrast - bc.contrast) < 1e-9);
    }
    const brighter = fromBrightnessContrast({ brightness: 50, contrast: 0 }, base);
    assert.ok(windowLUT(brighter)[100] > 100, "positive brightness brightens");
    const contrast = fromBrightnessContrast({ brightness: 0, contrast: 50 }, base);
    assert.equal(contrast.width, 127.5);
  });

  it("the base window of a DICOM case is the one the server converted it with", () => {
    assert.deepEqual(baseWindow(DOMAIN.GREY), { ...base, invert: false });
    assert.deepEqual(baseWindow(DOMAIN.HU, { meta: { window: { center: -600, width: 1500 } } }), {
      width: 1500,
      level: -600,
      invert: false,
    });
    assert.deepEqual(baseWindow(DOMAIN.HU, { meta: { window: { min: -1000, max: 1000 } } }), {
      width: 2000,
      level: 0,
      invert: false,
    });
    const mono1 = { photometric: "MONOCHROME1", window: { center: 500, width: 1000 } };
    assert.equal(baseWindow(DOMAIN.HU, { meta: mono1 }).invert, true, "MONOCHROME1: white is low");
    assert.equal(restoreDisplay(null, DOMAIN.HU, baseWindow(DOMAIN.HU, { meta: mono1 })).invert, true);
    assert.equal(restoreDisplay({ invert: false }, DOMAIN.HU, baseWindow(DOMAIN.HU, { meta: mono1 })).invert, false);
    assert.ok(hasWindowableValues({ photometric: "MONOCHROME2" }));
    assert.ok(!hasWindowableValues({ photometric: "PALETTE COLOR" }) && !hasWindowableValues(null));
    const values = Float32Array.from({ length: 1000 }, (_, i) => i - 500);
    const auto = baseWindow(DOMAIN.HU, { meta: {}, values });
    assert.ok(auto.width > 900 && Math.abs(auto.level) < 10);
  });

  it("a remembered display comes back; a broken one falls back to the base", () => {
    assert.deepEqual(restoreDisplay({ preset: "dark", invert: true }, DOMAIN.GREY, base), {
      preset: "dark",
      invert: true,
      width: 127,
      level: 63.5,
    });
    assert.deepEqual(restoreDisplay({ width: 90, level: 30 }, DOMAIN.GREY, base), {
      preset: null,
      invert: false,
      width: 90,
      level: 30,
    });
    assert.deepEqual(restoreDisplay({ width: -5, level: "x" }, DOMAIN.GREY, base), { preset: null, invert: false, ...base });
    assert.deepEqual(restoreDisplay({ preset: "nope" }, DOMAIN.GREY, base), { preset: null, invert: false, ...base });
    const lung = restoreDisplay({ preset: "lung" }, DOMAIN.HU, base);
    assert.equal(lung.width, 1500);
    assert.throws(() => presetWindow("auto", DOMAIN.GREY), RangeError, "auto needs the values");
  });
});
