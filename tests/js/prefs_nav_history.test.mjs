import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { diffMasks, diffRGBA, historyRows, versionAuthor } from "../../annotator_ui/static/annotator_ui/js/history.js";
import { makeQueue, popVisit, previousCase, pushVisit, queuePosition } from "../../annotator_ui/static/annotator_ui/js/nav.js";
import { DEFAULT_PREFS, Preferences, prefsKey } from "../../annotator_ui/static/annotator_ui/js/prefs.js";

function memoryStorage(initial = {}) {
  const map = new Map(Object.entries(initial));
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)), map };
}

describe("Preferences", () => {
  it("persist per user and project, and survive a reload", () => {
    const storage = memoryStorage();
    const a = new Preferences({ storage, userId: 1, projectId: 2 });
    assert.equal(a.get("brushRadius"), DEFAULT_PREFS.brushRadius);
    a.set("brushRadius", 14);
    a.set("display", { grey: { preset: "dark" } }, { merge: true });
    a.set("display", { hu: { preset: "lung" } }, { merge: true });
    const again = new Preferences({ storage, userId: 1, projectId: 2 });
    assert.equal(again.get("brushRadius"), 14);
    assert.deepEqual(again.get("display"), { grey: { preset: "dark" }, hu: { preset: "lung" } });
    const otherUser = new Preferences({ storage, userId: 3, projectId: 2 });
    assert.equal(otherUser.get("brushRadius"), DEFAULT_PREFS.brushRadius);
    const otherProject = new Preferences({ storage, userId: 1, projectId: 9 });
    assert.equal(otherProject.get("brushRadius"), DEFAULT_PREFS.brushRadius);
  });

  it("ignores corrupt or unknown entries, emits changes, mirrors to the server", async () => {
    const storage = memoryStorage({ [prefsKey(1, 2)]: "{not json" });
    const saved = [];
    const timers = [];
    const p = new Preferences({
      storage,
      userId: 1,
      projectId: 2,
      remote: { save: (v) => saved.push(v) },
      setTimer: (fn) => timers.push(fn) - 1,
      clearTimer: (id) => id != null && (timers[id] = null),
    });
    assert.equal(p.get("opacity"), DEFAULT_PREFS.opacity);
    const events = [];
    p.on("change", (e) => events.push(e));
    p.set("opacity", 60);
    p.set("opacity", 70);
    p.set("opacity", 70); // unchanged: no event, no write
    assert.deepEqual(events, [
      { key: "opacity", value: 60 },
      { key: "opacity", value: 70 },
    ]);
    assert.equal(saved.length, 0, "the server hears after a pause");
    for (const fn of timers) fn?.();
    assert.equal(saved.length, 1, "one save for the burst");
    assert.equal(saved[0].opacity, 70);
    const fromServer = new Preferences({
      storage,
      userId: 1,
      projectId: 2,
      initial: { opacity: 20, evil: 1, savedAt: Date.now() + 1000 },
    });
    assert.equal(fromServer.get("opacity"), 20, "the server's newer copy wins");
    assert.equal(fromServer.get("evil"), undefined);
  });

  it("keeps this browser's newer choice when the server missed it, and tells the server", () => {
    const storage = memoryStorage();
    const saved = [];
    const timers = [];
    const opts = {
      storage,
      userId: 1,
      projectId: 2,
      remote: { save: (v, o) => saved.push([v, o]) },
      setTimer: (fn) => timers.push(fn) - 1,
      clearTimer: (id) => id != null && (timers[id] = null),
    };
    let clock = 100;
    const a = new Preferences({ ...opts, now: () => clock });
    a.set("brushRadius", 20);
    a.flush(); // the page is left before the pause: sent at once, allowed to outlive the page
    assert.deepEqual(saved.at(-1)[1], { keepalive: true });
    assert.equal(saved.at(-1)[0].brushRadius, 20);
    a.flush();
    assert.equal(saved.length, 1, "nothing pending, nothing sent");
    clock = 200;
    const stale = { brushRadius: 6, savedAt: 50 }; // the server's copy is older than this browser's
    const b = new Preferences({ ...opts, initial: stale, now: () => clock });
    assert.equal(b.get("brushRadius"), 20);
    for (const fn of timers) fn?.();
    assert.equal(saved.at(-1)[0].brushRadius, 20, "the server gets the newer copy");
  });
});

describe("case navigation", () => {
  it("n of N from the worklist's order", () => {
    const q = makeQueue([5, 9, 2], 40);
    assert.deepEqual(queuePosition(q, 9), { index: 2, total: 40 });
    assert.equal(queuePosition(q, 77), null);
    assert.equal(queuePosition(null, 9), null);
  });

  it("previous case from the visit history", () => {
    let h = [];
    for (const id of [3, 4, 4, 8]) h = pushVisit(h, id);
    assert.deepEqual(h, [3, 4, 8]);
    assert.equal(previousCase(h, 8), 4);
    h = popVisit(h, 8);
    h = pushVisit(h, 4);
    assert.deepEqual(h, [3, 4]);
    assert.equal(previousCase(h, 4), 3);
    assert.equal(previousCase([3], 3), null);
    assert.equal(pushVisit(Array.from({ length: 60 }, (_, i) => i), 99, 50).length, 50);
  });
});

describe("mask history", () => {
  const masks = [
    { id: 1, version: 1, kind: "proposal", model_version: 2, author: null, parent_version: null },
    { id: 2, version: 2, kind: "correction", model_version: null, author: "dr.a", parent_version: 1 },
    { id: 3, version: 3, kind: "accepted", model_version: null, author: null, parent_version: null },
  ];

  it("names who made each version and what to compare it with", () => {
    const rows = historyRows(masks);
    assert.deepEqual(
      rows.map((r) => [r.mask.version, r.author, r.compareWith?.version ?? null]),
      [
        [3, "import", 2],
        [2, "dr.a", 1],
        [1, "model v2", null],
      ],
    );
    assert.equal(versionAuthor({ kind: "correction", author: null, model_version: null }), "unknown");
  });

  it("diff: added and removed pixels, drawn green and magenta", () => {
    const before = Uint8Array.from([1, 1, 0, 0]);
    const after = Uint8Array.from([1, 0, 1, 0]);
    const d = diffMasks(before, after);
    assert.deepEqual([...d.added], [2]);
    assert.deepEqual([...d.removed], [1]);
    assert.deepEqual([...diffMasks(null, after).added], [0, 2]);
    const rgba = diffRGBA(d, 4, after);
    assert.deepEqual([...rgba.slice(4, 8)], [255, 0, 200, 255]);
    assert.deepEqual([...rgba.slice(8, 12)], [40, 220, 90, 255]);
    assert.equal(rgba[3], 90, "kept pixels are faint");
    assert.equal(rgba[15], 0);
    assert.throws(() => diffMasks(new Uint8Array(3), after), RangeError);
  });
});
