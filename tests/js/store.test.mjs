import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { countOn, createMask } from "../../annotator_ui/static/annotator_ui/js/mask.js";
import { LAYERS, MaskStore, Origin } from "../../annotator_ui/static/annotator_ui/js/store.js";
import { UndoStack } from "../../annotator_ui/static/annotator_ui/js/undo.js";

function setup(w = 4, h = 4) {
  const store = new MaskStore();
  const proposal = createMask(w, h);
  proposal[0] = 1;
  store.load({ width: w, height: h, layers: { proposal }, edit: proposal, baseVersion: 7 });
  const undo = new UndoStack(store);
  return { store, undo };
}

describe("MaskStore", () => {
  it("loads layers and copies the edit layer (references stay untouched)", () => {
    const { store } = setup();
    store.paint([1], 1);
    assert.equal(store.layer(LAYERS.PROPOSAL)[1], 0);
    assert.equal(store.layer(LAYERS.EDIT)[1], 1);
    assert.equal(store.baseVersion, 7);
  });

  it("rejects layers of the wrong size", () => {
    const store = new MaskStore();
    assert.throws(() => store.load({ width: 2, height: 2, layers: { proposal: new Uint8Array(3) } }), RangeError);
  });

  it("emits one change with only the pixels that changed", () => {
    const { store } = setup();
    const events = [];
    store.on("change", (e) => events.push(e));
    const change = store.paint([0, 1, 2], 1); // pixel 0 is already on
    assert.deepEqual([...change.indices], [1, 2]);
    assert.deepEqual([...change.before], [0, 0]);
    assert.equal(events.length, 1);
    assert.equal(events[0].origin, Origin.LOCAL);
    assert.equal(store.paint([1, 2], 1), null, "a no-op emits nothing");
    assert.equal(events.length, 1);
  });

  it("tracks dirty against the last save and moves the base version on save", () => {
    const { store } = setup();
    assert.equal(store.dirty, false);
    store.paint([5], 1);
    assert.equal(store.dirty, true);
    store.markSaved(8);
    assert.equal(store.dirty, false);
    assert.equal(store.baseVersion, 8);
  });

  it("replace() swaps the whole edit layer as one change", () => {
    const { store } = setup();
    const full = createMask(4, 4).fill(1);
    const change = store.replace(full);
    assert.equal(change.indices.length, 15);
    assert.equal(countOn(store.layer(LAYERS.EDIT)), 16);
  });
});

describe("UndoStack", () => {
  it("undoes and redoes a grouped gesture as one step", () => {
    const { store, undo } = setup();
    undo.beginGroup();
    store.paint([1], 1);
    store.paint([2], 1);
    store.paint([3], 1);
    undo.endGroup();
    store.paint([4], 1);
    assert.equal(undo.size, 2);
    assert.ok(undo.undo());
    assert.equal(store.layer(LAYERS.EDIT)[4], 0);
    assert.equal(countOn(store.layer(LAYERS.EDIT)), 4);
    assert.ok(undo.undo());
    assert.equal(countOn(store.layer(LAYERS.EDIT)), 1);
    assert.equal(undo.canUndo, false);
    assert.equal(undo.undo(), false);
    assert.ok(undo.redo());
    assert.equal(countOn(store.layer(LAYERS.EDIT)), 4);
    assert.ok(undo.redo());
    assert.equal(countOn(store.layer(LAYERS.EDIT)), 5);
    assert.equal(undo.canRedo, false);
  });

  it("restores overlapping changes exactly (reverse order within a group)", () => {
    const { store, undo } = setup();
    undo.beginGroup();
    store.paint([1, 2], 1);
    store.paint([0, 1], 0); // erases pixel 0 (on from the proposal) and pixel 1 (painted just now)
    undo.endGroup();
    assert.deepEqual([...store.layer(LAYERS.EDIT).slice(0, 3)], [0, 0, 1]);
    undo.undo();
    assert.deepEqual([...store.layer(LAYERS.EDIT).slice(0, 3)], [1, 0, 0]);
  });

  it("a new local change clears the redo stack; undo/redo changes are not recorded", () => {
    const { store, undo } = setup();
    store.paint([1], 1);
    undo.undo();
    assert.equal(undo.canRedo, true);
    assert.equal(undo.size, 0, "the undo itself was not recorded");
    store.paint([2], 1);
    assert.equal(undo.canRedo, false);
  });

  it("emits state changes for the toolbar and clears on load", () => {
    const { store, undo } = setup();
    const states = [];
    undo.on("change", (s) => states.push(s));
    store.paint([1], 1);
    assert.deepEqual(states.at(-1), { canUndo: true, canRedo: false });
    store.load({ width: 2, height: 2 });
    assert.deepEqual(states.at(-1), { canUndo: false, canRedo: false });
  });

  it("keeps at most `limit` steps", () => {
    const store = new MaskStore();
    store.load({ width: 10, height: 1 });
    const undo = new UndoStack(store, { limit: 3 });
    for (let i = 0; i < 5; i++) store.paint([i], 1);
    assert.equal(undo.size, 3);
    while (undo.undo());
    assert.deepEqual([...store.layer(LAYERS.EDIT)].slice(0, 5), [1, 1, 0, 0, 0]);
  });
});
