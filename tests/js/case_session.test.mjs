import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";

import { ApiClient, ConflictError } from "../../annotator_ui/static/annotator_ui/js/api.js";
import { CaseSession, ReportMissingError } from "../../annotator_ui/static/annotator_ui/js/case_session.js";
import { countOn } from "../../annotator_ui/static/annotator_ui/js/mask.js";
import { LAYERS, MaskStore } from "../../annotator_ui/static/annotator_ui/js/store.js";

const W = 4;
const H = 3;

/** RGBA of a mask given as a list of "on" pixel indices. */
function rgbaOf(on) {
  const rgba = new Uint8ClampedArray(W * H * 4);
  for (let i = 0; i < W * H; i++) rgba[i * 4 + 3] = 255;
  for (const i of on) rgba.fill(255, i * 4, i * 4 + 3);
  return rgba;
}

const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/** A fake server: routes "METHOD path" to handlers; records requests (FormData bodies as objects). */
function fakeServer(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    const key = `${init.method} ${url.split("?")[0]}`;
    let body = init.body;
    if (body instanceof FormData) body = Object.fromEntries([...body.entries()].map(([k, v]) => [k, typeof v === "string" ? v : "<blob>"]));
    else if (typeof body === "string") body = JSON.parse(body);
    calls.push({ key, body });
    const handler = routes[key];
    if (!handler) return json(404, { error: "not_found", detail: key });
    return handler(body, calls);
  };
  return { api: new ApiClient({ fetch, csrfToken: () => "t" }), calls };
}

const mv = (version, kind, extra = {}) => ({
  id: 100 + version,
  version,
  kind,
  png_url: `/png/${version}`,
  model_version: kind === "proposal" ? 1 : null,
  author: kind === "proposal" ? null : "dr.a",
  parent_version: null,
  foreground: 1,
  ...extra,
});

const PIXELS = { "/png/1": [0], "/png/2": [0, 1], "/png/3": [5], "/png/4": [7] };
const codec = {
  pixels: async (url) => {
    if (!(url in PIXELS)) throw new Error(`404 ${url}`);
    return { rgba: rgbaOf(PIXELS[url]), width: W, height: H };
  },
  encodeMask: async (mask) => new Blob([mask]),
};

let store;
beforeEach(() => {
  store = new MaskStore();
});

function caseWith(head, extra = {}) {
  return {
    id: 7,
    width: W,
    height: H,
    state: head?.kind === "proposal" ? "proposed" : "in_review",
    head_version: head?.version ?? null,
    head_kind: head?.kind ?? null,
    head_mask: head,
    report: null,
    report_version: null,
    ...extra,
  };
}

describe("CaseSession: loading", () => {
  it("the head is the editable mask; the latest and previous proposals are their own layers", async () => {
    const masks = [mv(1, "proposal"), mv(2, "proposal"), mv(3, "correction", { parent_version: 2 })];
    const { api } = fakeServer({
      "GET /api/cases/7/": () => json(200, caseWith(masks[2])),
      "GET /api/cases/7/masks/": () => json(200, masks),
    });
    const session = new CaseSession({ api, store, codec, caseId: 7 });
    await session.load();
    assert.deepEqual([...store.layer(LAYERS.EDIT)].flatMap((v, i) => (v ? [i] : [])), [5]);
    assert.equal(countOn(store.layer(LAYERS.PROPOSAL)), 2, "v2 is the latest proposal");
    assert.equal(countOn(store.layer(LAYERS.PREVIOUS)), 1, "v1 is the previous one");
    assert.equal(store.baseVersion, 3);
    assert.equal(session.canReject, false, "a corrected case has no proposal to reject");
  });

  it("keepEdit swaps reference layers and keeps an unsaved drawing", async () => {
    let masks = [mv(1, "proposal")];
    const { api } = fakeServer({
      "GET /api/cases/7/": () => json(200, caseWith(masks.at(-1))),
      "GET /api/cases/7/masks/": () => json(200, masks),
    });
    const session = new CaseSession({ api, store, codec, caseId: 7 });
    await session.load();
    assert.equal(session.canReject, true);
    store.paint([11], 1);
    masks = [mv(1, "proposal"), mv(4, "proposal")];
    await session.load({ keepEdit: true });
    assert.equal(store.layer(LAYERS.EDIT)[11], 1, "the drawing is kept");
    assert.equal(store.layer(LAYERS.PROPOSAL)[7], 1, "the new proposal is shown");
    assert.equal(store.layer(LAYERS.PREVIOUS)[0], 1, "the old one is kept for the toggle");
  });
});

describe("CaseSession: the proposal to compare with", () => {
  it("is the newest made from another report, else the one before the latest", async () => {
    const masks = [
      mv(1, "proposal", { report_text: "" }),
      mv(2, "proposal", { report_text: "No pulmonary infection." }),
      mv(3, "proposal", { report_text: "No pulmonary infection." }),
    ];
    const { api } = fakeServer({
      "GET /api/cases/7/": () => json(200, caseWith(masks[2])),
      "GET /api/cases/7/masks/": () => json(200, masks),
    });
    const session = new CaseSession({ api, store, codec, caseId: 7 });
    await session.load();
    assert.equal(session.previousProposal().version, 1, "v2 read the same report as v3");
    session.version(1).report_text = "No pulmonary infection.";
    assert.equal(session.previousProposal().version, 2, "all from one report: the one before");
  });
});

describe("CaseSession: writes", () => {
  async function loaded(routes) {
    const masks = [mv(1, "proposal")];
    const server = fakeServer({
      "GET /api/cases/7/": () => json(200, caseWith(masks[0])),
      "GET /api/cases/7/masks/": () => json(200, masks),
      ...routes,
    });
    const session = new CaseSession({ api: server.api, store, codec, caseId: 7 });
    await session.load();
    return { session, ...server };
  }

  it("a save sends the base version and moves it", async () => {
    const { session, calls } = await loaded({ "POST /api/cases/7/masks/": () => json(201, mv(2, "correction")) });
    store.paint([3], 1);
    const saved = await session.saveMask();
    assert.equal(saved.version, 2);
    assert.deepEqual(calls.at(-1).body, { mask: "<blob>", base_version: "1" });
    assert.equal(store.baseVersion, 2);
    assert.equal(store.dirty, false);
    assert.equal(session.caseData.state, "in_review");
  });

  it("a 409 keeps the drawing, becomes the conflict, and 'save mine on top' retries on their version", async () => {
    let n = 0;
    const { session, calls } = await loaded({
      "POST /api/cases/7/masks/": () =>
        n++ === 0
          ? json(409, { error: "stale_base", detail: { message: "changed", current_version: 2, kept_version: 3 } })
          : json(201, mv(4, "correction")),
    });
    store.paint([3], 1);
    await assert.rejects(session.saveMask(), ConflictError);
    assert.deepEqual({ ...session.conflict, retry: undefined }, { current: 2, kept: 3, message: "changed", retry: undefined });
    assert.equal(store.layer(LAYERS.EDIT)[3], 1);
    assert.equal(store.dirty, true);
    const retried = await session.overwrite();
    assert.equal(retried.version, 4);
    assert.equal(calls.at(-1).body.base_version, "2");
    assert.equal(session.conflict, null);
  });

  it("accepting without a report needs a confirmation that is sent along", async () => {
    const { session, calls } = await loaded({
      "POST /api/cases/7/accept/": (body) =>
        body.without_report === "true"
          ? json(200, mv(2, "accepted"))
          : json(400, { error: "report_missing", detail: "this case has no report" }),
    });
    await assert.rejects(session.accept(), ReportMissingError);
    const accepted = await session.accept({ withoutReport: true });
    assert.equal(accepted.kind, "accepted");
    assert.equal(calls.at(-1).body.without_report, "true");
    assert.equal(session.caseData.state, "labeled");
    assert.equal(countOn(store.layer(LAYERS.ACCEPTED)), countOn(store.layer(LAYERS.EDIT)));
  });

  it("the report is saved only when its sentence changed, with its base version", async () => {
    const { session, calls } = await loaded({
      "PUT /api/cases/7/report/": (body) => json(200, { version: 1, text: "No pulmonary infection.", fields: body.fields }),
    });
    assert.equal(await session.saveReport({ fields: { laterality: "none" }, text: "No pulmonary infection." }), true);
    assert.equal(await session.saveReport({ fields: { laterality: "none" }, text: "No pulmonary infection." }), false);
    assert.equal(calls.filter((c) => c.key.startsWith("PUT")).length, 1);
    assert.equal(session.caseData.report_version, 1);
  });

  it("restore asks the server for a new version and edits from it", async () => {
    const masks = [mv(1, "proposal"), mv(2, "correction", { parent_version: 1 })];
    const server = fakeServer({
      "GET /api/cases/7/": () => json(200, caseWith(masks.at(-1))),
      "GET /api/cases/7/masks/": () => json(200, masks),
      "POST /api/masks/101/restore/": (body) => {
        assert.equal(body.base_version, 2);
        masks.push(mv(4, "correction", { parent_version: 2, stats: { restored_from: 1 } }));
        return json(201, masks.at(-1));
      },
    });
    const session = new CaseSession({ api: server.api, store, codec, caseId: 7 });
    await session.load();
    const restored = await session.restore(masks[0]);
    assert.equal(restored.version, 4);
    assert.equal(store.baseVersion, 4);
    assert.equal(store.layer(LAYERS.EDIT)[7], 1);
    assert.equal(store.dirty, false);
    assert.equal(session.masks.length, 3);
  });
});
