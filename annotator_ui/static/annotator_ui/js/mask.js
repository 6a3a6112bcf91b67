// Binary mask operations on Uint8Array masks in image-pixel coordinates (row-major, index = y * width + x).
// A mask pixel is 0 (background) or 1 (lesion). Nothing here touches the DOM, RLE or PNG: shape
// functions return the pixel indices they cover, and the store turns those into undoable change sets.

/** A width × height mask of zeros. */
export function createMask(width, height) {
  assertSize(width, height);
  return new Uint8Array(width * height);
}

function assertSize(width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`mask size must be positive integers, got ${width}×${height}`);
  }
}

function assertMask(mask, width, height) {
  assertSize(width, height);
  if (!(mask instanceof Uint8Array) || mask.length !== width * height) {
    throw new RangeError(`mask must be a Uint8Array of ${width * height} pixels`);
  }
}

/**
 * Pixel indices covered by a disc of radius `radius` centred on (cx, cy), clipped to the image.
 * A pixel (x, y) is covered when its centre (x + 0.5, y + 0.5) lies within the disc; a radius
 * below 0.5 still covers the pixel under the centre so a 1-pixel brush always paints.
 */
export function discIndices(width, height, cx, cy, radius) {
  assertSize(width, height);
  const r = Math.max(0.5, radius);
  const out = [];
  const y0 = Math.max(0, Math.floor(cy - r));
  const y1 = Math.min(height - 1, Math.ceil(cy + r));
  const x0 = Math.max(0, Math.floor(cx - r));
  const x1 = Math.min(width - 1, Math.ceil(cx + r));
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx;
      if (dx * dx + dy * dy <= r2) out.push(y * width + x);
    }
  }
  if (out.length === 0) {
    const px = Math.floor(cx);
    const py = Math.floor(cy);
    if (px >= 0 && py >= 0 && px < width && py < height) out.push(py * width + px);
  }
  return Uint32Array.from(out);
}

/**
 * Pixel indices covered by a round brush dragged from (x0, y0) to (x1, y1): every pixel whose
 * centre is within `radius` of the segment (a capsule), so fast strokes leave no gaps.
 */
export function strokeIndices(width, height, x0, y0, x1, y1, radius) {
  assertSize(width, height);
  const r = Math.max(0.5, radius);
  const r2 = r * r;
  const minX = Math.max(0, Math.floor(Math.min(x0, x1) - r));
  const maxX = Math.min(width - 1, Math.ceil(Math.max(x0, x1) + r));
  const minY = Math.max(0, Math.floor(Math.min(y0, y1) - r));
  const maxY = Math.min(height - 1, Math.ceil(Math.max(y0, y1) + r));
  const sx = x1 - x0;
  const sy = y1 - y0;
  const len2 = sx * sx + sy * sy;
  const out = [];
  for (let y = minY; y <= maxY; y++) {
    const py = y + 0.5;
    for (let x = minX; x <= maxX; x++) {
      const px = x + 0.5;
      let t = len2 === 0 ? 0 : ((px - x0) * sx + (py - y0) * sy) / len2;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const dx = px - (x0 + t * sx);
      const dy = py - (y0 + t * sy);
      if (dx * dx + dy * dy <= r2) out.push(y * width + x);
    }
  }
  if (out.length === 0) return discIndices(width, height, x1, y1, r);
  return Uint32Array.from(out);
}

/**
 * Pixel indices inside a polygon (even-odd rule, scanline fill through pixel centres).
 * `points` is a flat or nested list of image-pixel coordinates: [[x, y], ...].
 */
export function polygonIndices(width, height, points) {
  assertSize(width, height);
  const pts = points.map((p) => (Array.isArray(p) ? { x: p[0], y: p[1] } : p));
  if (pts.length < 3) return new Uint32Array(0);
  let minY = Infinity;
  let maxY = -Infinity;
  for (const p of pts) {
    minY = Math.min(minY, p.y);
    maxY = Math.max(maxY, p.y);
  }
  const out = [];
  const yStart = Math.max(0, Math.ceil(minY - 0.5));
  const yEnd = Math.min(height - 1, Math.floor(maxY - 0.5));
  const xs = [];
  for (let y = yStart; y <= yEnd; y++) {
    const cy = y + 0.5;
    xs.length = 0;
    for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
      const a = pts[i];
      const b = pts[j];
      // Half-open rule: an edge counts when the scanline crosses it at [min(y), max(y)).
      if (a.y <= cy !== b.y <= cy) {
        xs.push(a.x + ((cy - a.y) * (b.x - a.x)) / (b.y - a.y));
      }
    }
    xs.sort((p, q) => p - q);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // Pixel centres x + 0.5 within [xs[k], xs[k + 1]).
      const from = Math.max(0, Math.ceil(xs[k] - 0.5));
      const to = Math.min(width - 1, Math.ceil(xs[k + 1] - 0.5) - 1);
      for (let x = from; x <= to; x++) out.push(y * width + x);
    }
  }
  return Uint32Array.from(out);
}

/**
 * Pixel indices of the 4-connected region around (x, y).
 *
 * Without `image`, the region is the connected set of mask pixels with the seed's mask value
 * (fill a hole, or clear a blob). With `image` (a Uint8Array of grey levels, same size), the
 * region is the connected set of pixels whose grey level is within `tolerance` of the seed's,
 * which lets a clinician fill a lesion whose boundary is visible in the scan.
 */
export function floodIndices(mask, width, height, x, y, { image = null, tolerance = 0 } = {}) {
  assertMask(mask, width, height);
  const sx = Math.floor(x);
  const sy = Math.floor(y);
  if (sx < 0 || sy < 0 || sx >= width || sy >= height) return new Uint32Array(0);
  if (image && image.length !== width * height) throw new RangeError("image and mask sizes differ");
  const seed = sy * width + sx;
  const inside = image
    ? (i) => Math.abs(image[i] - image[seed]) <= tolerance
    : (i) => mask[i] === mask[seed];
  const seen = new Uint8Array(width * height);
  const stack = new Int32Array(width * height);
  const out = [];
  let top = 0;
  stack[top++] = seed;
  seen[seed] = 1;
  const visit = (n) => {
    if (!seen[n] && inside(n)) {
      seen[n] = 1;
      stack[top++] = n;
    }
  };
  while (top > 0) {
    const i = stack[--top];
    out.push(i);
    const px = i % width;
    if (px > 0) visit(i - 1);
    if (px < width - 1) visit(i + 1);
    if (i >= width) visit(i - width);
    if (i < width * (height - 1)) visit(i + width);
  }
  return Uint32Array.from(out).sort();
}

/** Set `indices` of `mask` to `value` in place; returns how many pixels changed. */
export function setPixels(mask, indices, value) {
  let changed = 0;
  for (const i of indices) {
    if (mask[i] !== value) {
      mask[i] = value;
      changed++;
    }
  }
  return changed;
}

export function union(a, b) {
  sameLength(a, b);
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] || b[i] ? 1 : 0;
  return out;
}

export function intersect(a, b) {
  sameLength(a, b);
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] && b[i] ? 1 : 0;
  return out;
}

export function subtract(a, b) {
  sameLength(a, b);
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] && !b[i] ? 1 : 0;
  return out;
}

export function invert(a) {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ? 0 : 1;
  return out;
}

export function countOn(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) n++;
  return n;
}

export function equals(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!a[i] !== !b[i]) return false;
  return true;
}

/** Dice overlap of two binary masks; two empty masks agree perfectly (1). */
export function dice(a, b) {
  sameLength(a, b);
  let inter = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ? 1 : 0;
    const y = b[i] ? 1 : 0;
    inter += x & y;
    sum += x + y;
  }
  return sum === 0 ? 1 : (2 * inter) / sum;
}

/** Tight bounding box {x, y, width, height} of the on pixels, or null for an empty mask. */
export function bbox(mask, width, height) {
  assertMask(mask, width, height);
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (mask[y * width + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}

/**
 * Pixels on the region's border (on, with at least one 4-neighbour off or outside the image):
 * what the "outline" overlay mode draws.
 */
export function outline(mask, width, height) {
  assertMask(mask, width, height);
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      if (x === 0 || y === 0 || x === width - 1 || y === height - 1) out[i] = 1;
      else if (!mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width]) out[i] = 1;
    }
  }
  return out;
}

/** Binary mask from RGBA pixels (e.g. a decoded PNG): on where the red channel is at least `threshold`. */
export function fromRGBA(rgba, width, height, threshold = 128) {
  assertSize(width, height);
  if (rgba.length !== width * height * 4) throw new RangeError("RGBA buffer does not match the mask size");
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = rgba[i * 4] >= threshold && rgba[i * 4 + 3] > 0 ? 1 : 0;
  return out;
}

/**
 * RGBA pixels painting on pixels with `color` ([r, g, b, a], a in 0..255) and leaving the rest
 * transparent: used both for the overlay and (with white on black, opaque) for PNG uploads.
 */
export function toRGBA(mask, color = [255, 255, 255, 255], background = [0, 0, 0, 0]) {
  const out = new Uint8ClampedArray(mask.length * 4);
  for (let i = 0; i < mask.length; i++) {
    const c = mask[i] ? color : background;
    const o = i * 4;
    out[o] = c[0];
    out[o + 1] = c[1];
    out[o + 2] = c[2];
    out[o + 3] = c[3];
  }
  return out;
}

/**
 * Uncompressed COCO RLE ({size: [height, width], counts}) in column-major order, as the export
 * writes it; starts with a run of zeros (possibly empty).
 */
export function encodeRLE(mask, width, height) {
  assertMask(mask, width, height);
  const counts = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

export function decodeRLE({ size, counts }) {
  const [height, width] = size;
  const mask = createMask(width, height);
  let pos = 0;
  let value = 0;
  for (const n of counts) {
    if (pos + n > width * height) throw new RangeError("RLE counts exceed the mask size");
    if (value) {
      for (let k = pos; k < pos + n; k++) {
        const x = Math.floor(k / height);
        const y = k % height;
        mask[y * width + x] = 1;
      }
    }
    pos += n;
    value ^= 1;
  }
  if (pos !== width * height) throw new RangeError(`RLE covers ${pos} pixels, mask has ${width * height}`);
  return mask;
}

function sameLength(a, b) {
  if (a.length !== b.length) throw new RangeError(`masks differ in size: ${a.length} vs ${b.length}`);
}
