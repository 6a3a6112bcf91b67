// Probability maps of a proposal: thresholding into a mask, the lesion area per threshold, a heat
// map overlay, and whether a proposal is empty. DOM-free.
//
// The server stores a proposal's probabilities quantized to uint8 (q = round(p * 255)); a pixel is
// in the mask at threshold t when q / 255 >= t.

/** The smallest quantized value at or above threshold `t` (0..1). */
export function quantizedCut(t) {
  if (!(t >= 0 && t <= 1)) throw new RangeError(`threshold must be in [0, 1], got ${t}`);
  return Math.max(0, Math.ceil(t * 255 - 1e-9));
}

/** Binary mask (1 = lesion) of a uint8 probability map at threshold `t`. */
export function thresholdMask(prob, t) {
  const cut = quantizedCut(t);
  const out = new Uint8Array(prob.length);
  for (let i = 0; i < prob.length; i++) out[i] = prob[i] >= cut ? 1 : 0;
  return out;
}

/**
 * Histogram summary of a probability map: `max` (0..1), `counts[q]` pixels per quantized value, and
 * `above[q]` pixels with a value ≥ q (the mask area at every threshold, read in O(1)).
 */
export function probabilityStats(prob) {
  const counts = new Uint32Array(256);
  for (let i = 0; i < prob.length; i++) counts[prob[i]]++;
  const above = new Uint32Array(257);
  for (let q = 255; q >= 0; q--) above[q] = above[q + 1] + counts[q];
  let max = 0;
  for (let q = 255; q >= 0; q--) {
    if (counts[q]) {
      max = q;
      break;
    }
  }
  return { max: max / 255, counts, above, total: prob.length };
}

/** Mask area (pixels) at threshold `t` from `probabilityStats`. */
export function areaAt(stats, t) {
  return stats.above[quantizedCut(t)];
}

/**
 * RGBA heat map of a probability map: transparent at 0, through blue and yellow to red at 1, alpha
 * growing with the probability (so low probabilities do not hide the scan).
 */
export function heatmapRGBA(prob) {
  const lut = heatLUT();
  const out = new Uint8ClampedArray(prob.length * 4);
  for (let i = 0; i < prob.length; i++) out.set(lut.subarray(prob[i] * 4, prob[i] * 4 + 4), i * 4);
  return out;
}

let cachedLUT = null;
function heatLUT() {
  if (cachedLUT) return cachedLUT;
  const stops = [
    [0, [0, 0, 255]],
    [0.5, [255, 230, 0]],
    [1, [255, 0, 0]],
  ];
  const lut = new Uint8ClampedArray(256 * 4);
  for (let q = 0; q < 256; q++) {
    const p = q / 255;
    const k = p <= 0.5 ? 0 : 1;
    const [p0, c0] = stops[k];
    const [p1, c1] = stops[k + 1];
    const f = (p - p0) / (p1 - p0);
    for (let c = 0; c < 3; c++) lut[q * 4 + c] = Math.round(c0[c] + (c1[c] - c0[c]) * f);
    lut[q * 4 + 3] = q === 0 ? 0 : Math.round(60 + 180 * p);
  }
  cachedLUT = lut;
  return lut;
}

/**
 * Whether a proposal found no lesion, and its highest probability when known. Uses the mask
 * version's `is_empty` (every version since studio migration 0010_pools) and `prob_max` (set when a
 * model's proposal is stored; null for proposals stored before it), else the stored foreground pixel
 * count and the maximum of the loaded probability map.
 * @param {{is_empty?: boolean, prob_max?: number, foreground?: number}} maskVersion
 * @param {{max: number}|null} stats  probabilityStats of its map, if loaded
 * @returns {{empty: boolean|null, probMax: number|null}}  empty null: unknown
 */
export function proposalEmptiness(maskVersion, stats = null) {
  if (!maskVersion) return { empty: null, probMax: null };
  const probMax = typeof maskVersion.prob_max === "number" ? maskVersion.prob_max : stats ? stats.max : null;
  if (typeof maskVersion.is_empty === "boolean") return { empty: maskVersion.is_empty, probMax };
  if (typeof maskVersion.foreground === "number") return { empty: maskVersion.foreground === 0, probMax };
  return { empty: null, probMax };
}
