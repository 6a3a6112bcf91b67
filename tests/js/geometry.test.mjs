import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ViewTransform } from "../../annotator_ui/static/annotator_ui/js/geometry.js";

describe("ViewTransform", () => {
  it("maps image ↔ screen both ways", () => {
    const v = new ViewTransform({ scale: 2, tx: 10, ty: 20 });
    assert.deepEqual(v.imageToScreen(5, 5), { x: 20, y: 30 });
    assert.deepEqual(v.screenToImage(20, 30), { x: 5, y: 5 });
  });

  it("pointerToImage subtracts the canvas' client rectangle", () => {
    const v = new ViewTransform({ scale: 4, tx: 0, ty: 0 });
    const rect = { left: 100, top: 50, width: 400, height: 400 };
    assert.deepEqual(v.pointerToImage(110, 58, rect), { x: 2.5, y: 2 });
    assert.deepEqual(v.pixelAt(110, 58, rect, 10, 10), { x: 2, y: 2 });
    assert.equal(v.pixelAt(90, 58, rect, 10, 10), null, "left of the image");
    assert.equal(v.pixelAt(100 + 4 * 10, 58, rect, 10, 10), null, "right edge is exclusive");
  });

  it("zoomAt keeps the point under the cursor fixed and clamps the scale", () => {
    const v = new ViewTransform({ scale: 1, tx: 5, ty: 7, maxScale: 8 });
    const before = v.screenToImage(100, 80);
    v.zoomAt(100, 80, 2);
    assert.equal(v.scale, 2);
    const after = v.screenToImage(100, 80);
    assert.ok(Math.abs(after.x - before.x) < 1e-9 && Math.abs(after.y - before.y) < 1e-9);
    v.zoomAt(0, 0, 100);
    assert.equal(v.scale, 8);
  });

  it("fit centres the image in the view", () => {
    const v = new ViewTransform().fit(200, 100, 500, 300, 0);
    assert.equal(v.scale, 2.5);
    assert.deepEqual(v.imageToScreen(0, 0), { x: 0, y: 25 });
    assert.deepEqual(v.imageToScreen(200, 100), { x: 500, y: 275 });
  });

  it("panBy and the canvas matrix agree with imageToScreen (device pixel ratio applied)", () => {
    const v = new ViewTransform({ scale: 3 }).panBy(4, -2);
    const [a, , , d, e, f] = v.canvasMatrix(2);
    const p = v.imageToScreen(1, 1);
    assert.equal(a * 1 + e, p.x * 2);
    assert.equal(d * 1 + f, p.y * 2);
    assert.deepEqual(v.visibleImageRect(30, 30), { x: -4 / 3, y: 2 / 3, width: 10, height: 10 });
  });
});
