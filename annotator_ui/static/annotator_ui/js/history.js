// A case's mask history: who or what made each version, and the difference between two versions as
// an overlay (pixels added in green, removed in magenta). DOM-free.

export const KIND_LABELS = Object.freeze({
  proposal: "Model proposal",
  pseudo: "Pseudo-label",
  correction: "Correction",
  accepted: "Accepted",
});

/** Who made a mask version, in words: "model v3", "dr.lee", or "import". */
export function versionAuthor(mv) {
  if (mv.model_version != null) return `model v${mv.model_version}`;
  if (mv.author) return mv.author;
  return mv.kind === "accepted" ? "import" : "unknown";
}

/** Versions newest first, each with the version it should be compared with (its parent, else the one before). */
export function historyRows(masks) {
  const byVersion = new Map(masks.map((m) => [m.version, m]));
  const sorted = [...masks].sort((a, b) => b.version - a.version);
  return sorted.map((mv, i) => {
    const parent = mv.parent_version != null ? byVersion.get(mv.parent_version) : null;
    const before = parent ?? sorted[i + 1] ?? null;
    return { mask: mv, compareWith: before, author: versionAuthor(mv), label: KIND_LABELS[mv.kind] ?? mv.kind };
  });
}

/**
 * The change from `before` to `after` (binary masks of one size; `before` null means empty):
 * `added` / `removed` pixel indices and their counts.
 */
export function diffMasks(before, after) {
  if (before && before.length !== after.length) throw new RangeError("masks of different sizes");
  const added = [];
  const removed = [];
  for (let i = 0; i < after.length; i++) {
    const a = before ? before[i] : 0;
    const b = after[i];
    if (b && !a) added.push(i);
    else if (a && !b) removed.push(i);
  }
  return { added: Uint32Array.from(added), removed: Uint32Array.from(removed) };
}

export const DIFF_COLORS = Object.freeze({ added: [40, 220, 90], removed: [255, 0, 200], kept: [160, 160, 160] });

/**
 * RGBA overlay of a diff for `size` pixels: added green, removed magenta, and (when `after` is given)
 * the unchanged lesion pixels in a faint grey, so the change reads in context.
 */
export function diffRGBA(diff, size, after = null) {
  const out = new Uint8ClampedArray(size * 4);
  if (after) {
    const [r, g, b] = DIFF_COLORS.kept;
    for (let i = 0; i < size; i++) {
      if (!after[i]) continue;
      out.set([r, g, b, 90], i * 4);
    }
  }
  for (const [key, idx] of [
    ["added", diff.added],
    ["removed", diff.removed],
  ]) {
    const [r, g, b] = DIFF_COLORS[key];
    for (const i of idx) out.set([r, g, b, 255], i * 4);
  }
  return out;
}
