import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ApiClient,
  ApiError,
  ConflictError,
  csrfFromCookie,
  formatDetail,
  queryString,
} from "../../annotator_ui/static/annotator_ui/js/api.js";

/** A fake fetch recording calls and answering with queued responses. */
function fakeFetch(...responses) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const r = responses.shift();
    if (r instanceof Error) throw r;
    return r;
  };
  fn.calls = calls;
  return fn;
}

const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

describe("ApiClient", () => {
  it("sends JSON with the CSRF token on unsafe methods only", async () => {
    const fetch = fakeFetch(json(200, { ok: 1 }), json(201, { id: 3 }));
    const api = new ApiClient({ fetch, csrfToken: () => "tok" });
    assert.deepEqual(await api.get("/api/x/", { query: { state: "labeled", empty: "" } }), { ok: 1 });
    assert.equal(fetch.calls[0].url, "/api/x/?state=labeled");
    assert.equal(fetch.calls[0].init.headers["X-CSRFToken"], undefined);
    assert.deepEqual(await api.post("/api/x/", { a: 1 }), { id: 3 });
    const init = fetch.calls[1].init;
    assert.equal(init.method, "POST");
    assert.equal(init.headers["X-CSRFToken"], "tok");
    assert.equal(init.headers["Content-Type"], "application/json");
    assert.equal(init.body, '{"a":1}');
    assert.equal(init.credentials, "same-origin");
  });

  it("parses the API error shape into ApiError", async () => {
    const api = new ApiClient({
      fetch: fakeFetch(json(400, { error: "invalid", detail: { areas: ["required for this kind of report"] } })),
    });
    await assert.rejects(api.post("/api/r/", {}), (err) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 400);
      assert.equal(err.code, "invalid");
      assert.equal(err.message, "areas: required for this kind of report");
      return true;
    });
  });

  it("turns HTTP 409 into ConflictError", async () => {
    const api = new ApiClient({
      fetch: fakeFetch(json(409, { error: "stale_base", detail: "the mask changed since version 3" })),
    });
    await assert.rejects(api.post("/api/m/", { base_version: 3 }), (err) => {
      assert.ok(err instanceof ConflictError);
      assert.ok(err instanceof ApiError);
      assert.equal(err.status, 409);
      assert.equal(err.detail, "the mask changed since version 3");
      return true;
    });
  });

  it("reports network failures and non-JSON errors", async () => {
    const api = new ApiClient({
      fetch: fakeFetch(new TypeError("Failed to fetch"), new Response("boom", { status: 502, statusText: "Bad Gateway" })),
    });
    await assert.rejects(api.get("/a"), (e) => e.status === 0 && e.code === "network");
    await assert.rejects(api.get("/a"), (e) => e.status === 502 && e.message === "Bad Gateway");
  });

  it("returns null for 204 and follows pagination in list()", async () => {
    const fetch = fakeFetch(
      new Response(null, { status: 204 }),
      json(200, { results: [1, 2], next: "http://h/api/c/?limit=2&offset=2" }),
      json(200, { results: [3], next: null }),
    );
    const api = new ApiClient({ fetch });
    assert.equal(await api.delete("/api/c/1/"), null);
    assert.deepEqual(await api.list("/api/c/"), [1, 2, 3]);
    assert.equal(fetch.calls[2].url, "/api/c/?limit=2&offset=2");
  });

  it("uploads FormData without forcing a content type", async () => {
    const fetch = fakeFetch(json(201, {}));
    const api = new ApiClient({ fetch, csrfToken: () => "t" });
    const form = new FormData();
    form.append("name", "x");
    await api.upload("/api/up/", form);
    assert.equal(fetch.calls[0].init.body, form);
    assert.equal(fetch.calls[0].init.headers["Content-Type"], undefined);
  });
});

describe("helpers", () => {
  it("csrfFromCookie", () => {
    assert.equal(csrfFromCookie("a=1; csrftoken=abc%3D; b=2"), "abc=");
    assert.equal(csrfFromCookie(""), "");
  });

  it("formatDetail flattens strings, lists and field errors", () => {
    assert.equal(formatDetail(["a", "b"]), "a b");
    assert.equal(formatDetail({ non_field_errors: ["x"], name: ["taken"] }), "x; name: taken");
    assert.equal(formatDetail({ message: "the first model needs 8 accepted cases", missing: 5 }), "the first model needs 8 accepted cases");
  });

  it("queryString repeats list values", () => {
    assert.equal(queryString({ s: ["a", "b"], n: 0, z: null }), "?s=a&s=b&n=0");
  });
});

describe("uploadWithProgress", () => {
  /** A fake XMLHttpRequest answering `status` with a JSON body after two progress events. */
  function fakeXHR(status, body) {
    const sent = [];
    class FakeXHR {
      upload = { listeners: {}, addEventListener: (t, f) => (this.upload.listeners[t] = f) };
      listeners = {};
      headers = {};
      open(method, url) {
        this.method = method;
        this.url = url;
      }
      setRequestHeader(k, v) {
        this.headers[k] = v;
      }
      addEventListener(t, f) {
        this.listeners[t] = f;
      }
      getResponseHeader() {
        return "application/json";
      }
      send(form) {
        sent.push(this);
        this.upload.listeners.progress?.({ lengthComputable: true, loaded: 5, total: 10 });
        this.upload.listeners.progress?.({ lengthComputable: true, loaded: 10, total: 10 });
        this.status = status;
        this.responseText = JSON.stringify(body);
        this.form = form;
        this.listeners.load();
      }
    }
    return { FakeXHR, sent };
  }

  it("reports progress and resolves with the JSON answer", async () => {
    const { FakeXHR, sent } = fakeXHR(202, { id: 9, status: "pending" });
    const api = new ApiClient({ csrfToken: () => "tok" });
    const progress = [];
    const out = await api.uploadWithProgress("/api/up/", new FormData(), {
      XHR: FakeXHR,
      onProgress: (a, b) => progress.push([a, b]),
    });
    assert.deepEqual(out, { id: 9, status: "pending" });
    assert.deepEqual(progress, [
      [5, 10],
      [10, 10],
    ]);
    assert.equal(sent[0].headers["X-CSRFToken"], "tok");
  });

  it("turns the API error shape into ApiError", async () => {
    const { FakeXHR } = fakeXHR(400, { error: "invalid_layout", detail: "no images" });
    const api = new ApiClient();
    await assert.rejects(api.uploadWithProgress("/api/up/", new FormData(), { XHR: FakeXHR }), (err) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, "invalid_layout");
      assert.equal(err.message, "no images");
      return true;
    });
  });
});
