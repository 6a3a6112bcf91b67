// The annotation store of one case: mask layers in image-pixel coordinates, the editable layer's
// base version, and change events. DOM-free: the canvas view subscribes and redraws on changes,
// the undo stack subscribes and records change sets.
//
// A change is {layer, indices, before, after}: the pixels that actually changed, with their old
// and new values, so applying it backwards restores the mask exactly.

import { Emitter } from "./events.js";
import { createMask, equals } from "./mask.js";

/** The layers a case can show. Only EDIT is editable; the others are read-only references. */
export const LAYERS = Object.freeze({
  EDIT: "edit",
  PROPOSAL: "proposal",
  PREVIOUS: "previous", // the proposal before the latest (e.g. made from the report before an edit)
  THRESHOLD: "threshold", // the latest proposal's probability map at the chosen threshold
  PSEUDO: "pseudo",
  ACCEPTED: "accepted",
  THEIRS: "theirs", // the version someone else saved, shown during a conflict
});

export const Origin = Object.freeze({ LOCAL: "local", UNDO: "undo", REDO: "redo", REMOTE: "remote" });

export class MaskStore extends Emitter {
  width = 0;
  height = 0;
  /** Id of the mask version the edit layer started from; sent with every save (null: none yet). */
  baseVersion = null;
  #layers = new Map();
  #saved = null;

  /**
   * Replace everything with a freshly loaded case.
   * @param {{width: number, height: number, layers?: Object<string, Uint8Array|null>,
   *          edit?: Uint8Array|null, baseVersion?: string|number|null}} init
   */
  load({ width, height, layers = {}, edit = null, baseVersion = null }) {
    this.width = width;
    this.height = height;
    this.#layers = new Map();
    for (const [name, mask] of Object.entries(layers)) {
      if (mask) this.#layers.set(name, this.#checked(mask, name));
    }
    const editMask = edit ? this.#checked(edit, LAYERS.EDIT).slice() : createMask(width, height);
    this.#layers.set(LAYERS.EDIT, editMask);
    this.baseVersion = baseVersion;
    this.#saved = editMask.slice();
    this.emit("load", { width, height });
  }

  #checked(mask, name) {
    if (!(mask instanceof Uint8Array) || mask.length !== this.width * this.height) {
      throw new RangeError(`layer ${name} must be a Uint8Array of ${this.width}×${this.height}`);
    }
    return mask;
  }

  has(layer) {
    return this.#layers.has(layer);
  }

  /** The live mask of `layer` (do not mutate; use `paint`). */
  layer(layer) {
    return this.#layers.get(layer) ?? null;
  }

  layerNames() {
    return [...this.#layers.keys()];
  }

  /** Set a read-only reference layer (e.g. a new proposal arrived); not undoable. */
  setReference(layer, mask) {
    if (layer === LAYERS.EDIT) throw new Error("use paint() or replace() for the edit layer");
    if (mask) this.#layers.set(layer, this.#checked(mask, layer));
    else this.#layers.delete(layer);
    this.emit("reference", { layer });
  }

  /**
   * Set `indices` of the edit layer to `value`. Emits one change with only the pixels that
   * changed; returns it (or null when nothing changed).
   */
  paint(indices, value, { origin = Origin.LOCAL, layer = LAYERS.EDIT } = {}) {
    const mask = this.#layers.get(layer);
    if (!mask) throw new Error(`no layer ${layer}`);
    const v = value ? 1 : 0;
    let n = 0;
    for (const i of indices) if (mask[i] !== v) n++;
    if (n === 0) return null;
    const changed = new Uint32Array(n);
    const before = new Uint8Array(n);
    const after = new Uint8Array(n).fill(v);
    let k = 0;
    for (const i of indices) {
      if (mask[i] !== v) {
        changed[k] = i;
        before[k] = mask[i];
        mask[i] = v;
        k++;
      }
    }
    const change = { layer, indices: changed, before, after };
    this.emit("change", { changes: [change], origin });
    return change;
  }

  /** Replace the whole edit layer (e.g. "start from the proposal") as one undoable change. */
  replace(mask, { origin = Origin.LOCAL } = {}) {
    const current = this.#layers.get(LAYERS.EDIT);
    this.#checked(mask, LAYERS.EDIT);
    const idx = [];
    for (let i = 0; i < mask.length; i++) if (current[i] !== (mask[i] ? 1 : 0)) idx.push(i);
    if (idx.length === 0) return null;
    const indices = Uint32Array.from(idx);
    const before = new Uint8Array(indices.length);
    const after = new Uint8Array(indices.length);
    indices.forEach((i, k) => {
      before[k] = current[i];
      after[k] = mask[i] ? 1 : 0;
      current[i] = after[k];
    });
    const change = { layer: LAYERS.EDIT, indices, before, after };
    this.emit("change", { changes: [change], origin });
    return change;
  }

  /** Apply change sets forwards (redo) or backwards (undo), emitting them as one event. */
  applyChanges(changes, { reverse = false, origin }) {
    const ordered = reverse ? [...changes].reverse() : changes;
    const applied = [];
    for (const c of ordered) {
      const mask = this.#layers.get(c.layer);
      const values = reverse ? c.before : c.after;
      for (let k = 0; k < c.indices.length; k++) mask[c.indices[k]] = values[k];
      applied.push(reverse ? { layer: c.layer, indices: c.indices, before: c.after, after: c.before } : c);
    }
    this.emit("change", { changes: applied, origin });
  }

  /** Whether the edit layer differs from what was last loaded or saved. */
  get dirty() {
    const edit = this.#layers.get(LAYERS.EDIT);
    return !!edit && !equals(edit, this.#saved);
  }

  /** Record a successful save: the new version becomes the base of the next save. */
  markSaved(version) {
    this.baseVersion = version;
    this.#saved = this.#layers.get(LAYERS.EDIT).slice();
    this.emit("saved", { version });
  }
}
