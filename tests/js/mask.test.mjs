import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  bbox,
  countOn,
  createMask,
  decodeRLE,
  dice,
  discIndices,
  encodeRLE,
  floodIndices,
  fromRGBA,
  intersect,
  outline,
  polygonIndices,
  setPixels,
  strokeIndices,
  subtract,
  toRGBA,
  union,
} from "../../annotator_ui/static/annotator_ui/js/mask.js";

/** Draw a mask as rows of "#" and "." for readable assertions. */
function show(mask, w, h) {
  const rows = [];
  for (let y = 0; y < h; y++) {
    let r = "";
    for (let x = 0; x < w; x++) r += mask[y * w + x] ? "#" : ".";
    rows.push(r);
  }
  return rows.join("\n");
}

function maskFrom(rows) {
  const h = rows.length;
  const w = rows[0].length;
  const m = createMask(w, h);
  rows.forEach((r, y) => [...r].forEach((c, x) => (m[y * w + x] = c === "#" ? 1 : 0)));
  return { m, w, h };
}

describe("createMask", () => {
  it("rejects bad sizes", () => {
    assert.throws(() => createMask(0, 3), RangeError);
    assert.throws(() => createMask(2.5, 3), RangeError);
  });
});

describe("discIndices", () => {
  it("covers pixels whose centres lie within the radius", () => {
    const m = createMask(7, 7);
    setPixels(m, discIndices(7, 7, 3.5, 3.5, 2.5), 1);
    assert.equal(
      show(m, 7, 7),
      [".......", "..###..", ".#####.", ".#####.", ".#####.", "..###..", "......."].join("\n"),
    );
  });

  it("a tiny radius still paints the pixel under the centre", () => {
    assert.deepEqual([...discIndices(5, 5, 2.2, 3.9, 0.1)], [3 * 5 + 2]);
  });

  it("clips at the image border", () => {
    const idx = discIndices(4, 4, 0, 0, 1.6);
    assert.ok(idx.length > 0);
    for (const i of idx) assert.ok(i < 16);
    assert.deepEqual([...idx].sort((a, b) => a - b), [0, 1, 4]);
  });

  it("outside the image paints nothing", () => {
    assert.equal(discIndices(4, 4, -10, -10, 2).length, 0);
  });
});

describe("strokeIndices", () => {
  it("covers the segment without gaps (a capsule)", () => {
    const m = createMask(12, 5);
    setPixels(m, strokeIndices(12, 5, 1.5, 2.5, 10.5, 2.5, 0.5), 1);
    assert.equal(show(m, 12, 5).split("\n")[2], ".##########.");
    assert.equal(countOn(m), 10);
  });

  it("a zero-length stroke is a disc", () => {
    const a = strokeIndices(9, 9, 4.5, 4.5, 4.5, 4.5, 2);
    const b = discIndices(9, 9, 4.5, 4.5, 2);
    assert.deepEqual([...a].sort(), [...b].sort());
  });
});

describe("polygonIndices", () => {
  it("fills an axis-aligned rectangle exactly (pixel centres inside)", () => {
    const m = createMask(6, 5);
    setPixels(m, polygonIndices(6, 5, [[1, 1], [4, 1], [4, 4], [1, 4]]), 1);
    assert.equal(show(m, 6, 5), ["......", ".###..", ".###..", ".###..", "......"].join("\n"));
  });

  it("fills a triangle with the even-odd rule", () => {
    const m = createMask(8, 8);
    setPixels(m, polygonIndices(8, 8, [{ x: 0, y: 0 }, { x: 8, y: 0 }, { x: 0, y: 8 }]), 1);
    assert.equal(m[0], 1);
    assert.equal(m[7 * 8 + 7], 0);
    assert.equal(countOn(m), 28); // pixel centres with x + y < 7 (strictly below the diagonal): 8+7+…+1 minus the 8 on it
  });

  it("fewer than three points fill nothing; polygons are clipped", () => {
    assert.equal(polygonIndices(4, 4, [[0, 0], [3, 3]]).length, 0);
    const idx = polygonIndices(4, 4, [[-5, -5], [10, -5], [10, 10], [-5, 10]]);
    assert.equal(idx.length, 16);
  });
});

describe("floodIndices", () => {
  it("fills the hole enclosed by a ring, not the outside", () => {
    const { m, w, h } = maskFrom([".....", ".###.", ".#.#.", ".###.", "....."]);
    const idx = floodIndices(m, w, h, 2, 2);
    assert.deepEqual([...idx], [12]);
    setPixels(m, idx, 1);
    assert.equal(countOn(m), 9);
  });

  it("outside region is 4-connected (diagonal gaps stop it)", () => {
    const { m, w, h } = maskFrom(["..#", ".#.", "#.."]);
    const idx = floodIndices(m, w, h, 0, 0);
    assert.deepEqual([...idx], [0, 1, 3]);
  });

  it("follows grey levels within the tolerance when given an image", () => {
    const w = 4;
    const h = 1;
    const image = Uint8Array.from([100, 105, 140, 102]);
    const idx = floodIndices(createMask(w, h), w, h, 0, 0, { image, tolerance: 10 });
    assert.deepEqual([...idx], [0, 1]);
  });

  it("a seed outside the image fills nothing", () => {
    assert.equal(floodIndices(createMask(3, 3), 3, 3, 5, 1).length, 0);
  });
});

describe("bit operations", () => {
  const a = Uint8Array.from([1, 1, 0, 0]);
  const b = Uint8Array.from([1, 0, 1, 0]);
  it("union, intersect, subtract", () => {
    assert.deepEqual([...union(a, b)], [1, 1, 1, 0]);
    assert.deepEqual([...intersect(a, b)], [1, 0, 0, 0]);
    assert.deepEqual([...subtract(a, b)], [0, 1, 0, 0]);
    assert.throws(() => union(a, new Uint8Array(3)), RangeError);
  });

  it("dice", () => {
    assert.equal(dice(a, b), 0.5);
    assert.equal(dice(new Uint8Array(4), new Uint8Array(4)), 1);
  });

  it("bbox and outline", () => {
    const { m, w, h } = maskFrom([".....", ".###.", ".###.", ".###.", "....."]);
    assert.deepEqual(bbox(m, w, h), { x: 1, y: 1, width: 3, height: 3 });
    assert.equal(bbox(createMask(2, 2), 2, 2), null);
    assert.equal(show(outline(m, w, h), w, h), [".....", ".###.", ".#.#.", ".###.", "....."].join("\n"));
  });
});

describe("RGBA and RLE", () => {
  it("round-trips through RGBA", () => {
    const m = Uint8Array.from([0, 1, 1, 0, 1, 0]);
    const rgba = toRGBA(m, [255, 255, 255, 255], [0, 0, 0, 255]);
    assert.deepEqual([...fromRGBA(rgba, 3, 2)], [...m]);
  });

  it("encodes COCO RLE column-major, starting with zeros", () => {
    const { m, w, h } = maskFrom(["#.", "##"]);
    // column-major: x=0: 1,1  x=1: 0,1 → runs: 0 zeros, 2 ones, 1 zero, 1 one
    assert.deepEqual(encodeRLE(m, w, h), { size: [2, 2], counts: [0, 2, 1, 1] });
    assert.deepEqual([...decodeRLE(encodeRLE(m, w, h))], [...m]);
  });

  it("rejects RLE that does not cover the mask", () => {
    assert.throws(() => decodeRLE({ size: [2, 2], counts: [1, 1] }), RangeError);
  });
});
