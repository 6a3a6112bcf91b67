// The lung-zone grid and report–mask agreement, as the server's inconsistency score computes it
// (server/studio/reports.py: body_box, observed_cells, expected_cells, inconsistency_score); a parity
// test runs both on the same masks. DOM-free.
//
// Radiological display: the patient's right lung is on the image's LEFT half of the body box, the
// patient's left on the RIGHT half. Each half is cut into thirds of the box's rows: upper, middle,
// lower. A cell is {side: "left"|"right", zone: "upper"|"middle"|"lower"} in the patient's terms.

export const SIDES = Object.freeze(["right", "left"]); // image left to right
export const ZONE_NAMES = Object.freeze(["upper", "middle", "lower"]);

/** "left upper" style key of a cell. */
export const cellKey = (side, zone) => `${side} ${zone}`;

/**
 * `[top, bottom, left, right]` of the body in an 8-bit image: rows/columns where more than 1 % of
 * the pixels are brighter than `threshold`; the whole image when none are.
 * @param {ArrayLike<number>} grey  one value per pixel (the mean of the channels for colour scans)
 */
export function bodyBox(grey, width, height, { threshold = 40 } = {}) {
  const rowCount = new Uint32Array(height);
  const colCount = new Uint32Array(width);
  for (let y = 0; y < height; y++) {
    const o = y * width;
    for (let x = 0; x < width; x++) {
      if (grey[o + x] > threshold) {
        rowCount[y]++;
        colCount[x]++;
      }
    }
  }
  const rows = [];
  for (let y = 0; y < height; y++) if (rowCount[y] / width > 0.01) rows.push(y);
  const cols = [];
  for (let x = 0; x < width; x++) if (colCount[x] / height > 0.01) cols.push(x);
  if (!rows.length || !cols.length) return [0, height, 0, width];
  return [rows[0], rows[rows.length - 1] + 1, cols[0], cols[cols.length - 1] + 1];
}

/** A usable box for a width × height image: the given one when valid, else the whole image. */
export function resolveBox(box, width, height) {
  if (Array.isArray(box) && box.length === 4) {
    const [top, bottom, left, right] = box.map(Number);
    if (top >= 0 && left >= 0 && bottom <= height && right <= width && bottom > top && right > left) {
      return [top, bottom, left, right];
    }
  }
  return [0, height, 0, width];
}

/**
 * The grid in image coordinates: the box, the column where the halves meet and the two row cuts,
 * and a rectangle {side, zone, x, y, width, height} per cell.
 */
export function zoneGrid(box) {
  const [top, bottom, left, right] = box;
  const w = right - left;
  const h = bottom - top;
  const mid = Math.floor(w / 2);
  const cuts = [0, Math.floor(h / 3), Math.floor((2 * h) / 3), h];
  const cells = [];
  for (const side of SIDES) {
    const x0 = side === "right" ? left : left + mid;
    const x1 = side === "right" ? left + mid : right;
    ZONE_NAMES.forEach((zone, i) => {
      cells.push({ side, zone, x: x0, y: top + cuts[i], width: x1 - x0, height: cuts[i + 1] - cuts[i] });
    });
  }
  return { box, midX: left + mid, rowCuts: cuts.slice(1, 3).map((c) => top + c), cells };
}

/**
 * Per-cell lesion pixel counts of a binary mask inside the box, plus each half's total.
 * @returns {{counts: Object<string, number>, sideTotals: {right: number, left: number}}}
 */
export function cellCounts(mask, width, height, box) {
  const [top, bottom, left, right] = box;
  const h = bottom - top;
  const mid = Math.floor((right - left) / 2);
  const cut1 = Math.floor(h / 3);
  const cut2 = Math.floor((2 * h) / 3);
  const counts = {};
  for (const s of SIDES) for (const z of ZONE_NAMES) counts[cellKey(s, z)] = 0;
  const rows = [0, 0, 0];
  const per = { right: [0, 0, 0], left: [0, 0, 0] };
  for (let y = top; y < bottom; y++) {
    const r = y - top;
    const zi = r < cut1 ? 0 : r < cut2 ? 1 : 2;
    const o = y * width;
    let nRight = 0;
    let nLeft = 0;
    for (let x = left; x < right; x++) {
      if (!mask[o + x]) continue;
      if (x - left < mid) nRight++;
      else nLeft++;
    }
    per.right[zi] += nRight;
    per.left[zi] += nLeft;
    rows[zi] += nRight + nLeft;
  }
  ZONE_NAMES.forEach((z, i) => {
    counts[cellKey("right", z)] = per.right[i];
    counts[cellKey("left", z)] = per.left[i];
  });
  const sum = (a) => a[0] + a[1] + a[2];
  return { counts, sideTotals: { right: sum(per.right), left: sum(per.left) } };
}

/**
 * Cells holding lesion pixels, after the dataset text rules: a side is affected when it holds at
 * least `minSide` of the image area in lesion pixels or holds the most (the patient's right on a
 * tie, as the server's dict order gives); a third of an affected side counts when it holds at least
 * `minZone` of that side's lesion pixels.
 * @returns {Set<string>} cell keys ("left upper", …)
 */
export function observedCells(mask, width, height, { box = null, minSide = 0.002, minZone = 0.05 } = {}) {
  const b = resolveBox(box, width, height);
  const { counts, sideTotals } = cellCounts(mask, width, height, b);
  const out = new Set();
  if (sideTotals.right + sideTotals.left === 0) return out;
  const most = sideTotals.left > sideTotals.right ? "left" : "right";
  for (const side of SIDES) {
    const n = sideTotals[side];
    if (n === 0 || (n < minSide * height * width && side !== most)) continue;
    for (const zone of ZONE_NAMES) if (counts[cellKey(side, zone)] >= minZone * n) out.add(cellKey(side, zone));
  }
  return out;
}

/** Cells a lung-infection report claims (patient's sides), or null for reports of other templates. */
export function expectedCells(fields) {
  if (!fields || !("laterality" in fields)) return null;
  const out = new Set();
  for (const side of ["left", "right"]) {
    const zones = fields[`${side}_zones`] || [];
    for (const z of zones.includes("all") ? ZONE_NAMES : zones) out.add(cellKey(side, z));
  }
  return out;
}

/** 1 - Jaccard(claimed, observed), rounded to 4 decimals; 0 when both are empty. */
export function inconsistency(expected, observed) {
  const union = new Set([...expected, ...observed]);
  if (!union.size) return 0;
  let both = 0;
  for (const c of expected) if (observed.has(c)) both++;
  return Math.round((1 - both / union.size) * 1e4) / 1e4;
}

/**
 * Per-zone agreement of a report and a mask: for every cell whether the report names it, whether the
 * mask covers it and whether the two agree; the disagreeing cells; the inconsistency score.
 * `applicable` is false (and cells empty) when the report is not a lung-infection report.
 */
export function zoneAgreement(fields, mask, width, height, { box = null } = {}) {
  const expected = expectedCells(fields);
  const b = resolveBox(box, width, height);
  if (expected === null) return { applicable: false, box: b, cells: [], disagree: [], score: null };
  const observed = observedCells(mask, width, height, { box: b });
  const cells = [];
  for (const side of SIDES) {
    for (const zone of ZONE_NAMES) {
      const key = cellKey(side, zone);
      const claimed = expected.has(key);
      const seen = observed.has(key);
      cells.push({ side, zone, key, claimed, observed: seen, agree: claimed === seen });
    }
  }
  return {
    applicable: true,
    box: b,
    cells,
    disagree: cells.filter((c) => !c.agree).map((c) => c.key),
    score: inconsistency(expected, observed),
  };
}

/**
 * Short words for a disagreeing cell: "left upper: mask only" (the mask covers a zone the report does
 * not name) or "right lower: report only" (the report names a zone the mask leaves empty).
 */
export function describeCell(cell) {
  if (cell.agree) return `${cell.key}: agree`;
  return `${cell.key}: ${cell.observed ? "mask only" : "report only"}`;
}

/**
 * Short words for the server's stored zone summary of a case ({expected, observed, disagree}: cell
 * keys), e.g. ["L upper: mask only", "R lower: report only"], for the worklist.
 */
export function disagreementWords(summary) {
  if (!summary || !Array.isArray(summary.disagree)) return [];
  const observed = new Set(summary.observed ?? []);
  return summary.disagree.map((key) => {
    const [side, zone] = key.split(" ");
    return `${side === "left" ? "L" : "R"} ${zone}: ${observed.has(key) ? "mask only" : "report only"}`;
  });
}
