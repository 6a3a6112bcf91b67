import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { watchJob } from "../../annotator_ui/static/annotator_ui/js/job_watch.js";

/** A fake WebSocket: records instances; tests push messages and closes into it. */
function fakeSockets() {
  const instances = [];
  class FakeSocket {
    readyState = 0;
    listeners = { message: [], close: [] };
    closed = false;
    constructor(url) {
      this.url = url;
      instances.push(this);
    }
    addEventListener(type, fn) {
      this.listeners[type].push(fn);
    }
    open() {
      this.readyState = 1;
    }
    receive(data) {
      for (const fn of this.listeners.message) fn({ data: JSON.stringify(data) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      for (const fn of this.listeners.close) fn({ code });
    }
    close() {
      this.closed = true;
      this.readyState = 3;
    }
  }
  return { FakeSocket, instances };
}

/** Timers under the test's control. */
function manualTimers() {
  const timeouts = [];
  const repeats = new Map();
  let next = 1;
  return {
    setTimer: (fn) => timeouts.push(fn),
    setRepeat: (fn) => {
      repeats.set(next, fn);
      return next++;
    },
    clearRepeat: (id) => repeats.delete(id),
    runTimeouts: () => timeouts.splice(0).forEach((fn) => fn()),
    tick: async () => {
      for (const fn of repeats.values()) await fn();
    },
    repeats,
  };
}

const location = { protocol: "https:", host: "studio.example" };
const running = (extra = {}) => ({ id: 7, status: "running", progress: {}, ...extra });

describe("watchJob", () => {
  it("follows the websocket until the job finishes", async () => {
    const { FakeSocket, instances } = fakeSockets();
    const timers = manualTimers();
    const seen = [];
    const w = watchJob({ get: async () => assert.fail("no polling while the socket is open") }, running(), (j, via) => seen.push([j.status, via]), {
      WebSocketImpl: FakeSocket,
      location,
      ...timers,
    });
    assert.equal(instances.length, 1);
    assert.equal(instances[0].url, "wss://studio.example/ws/jobs/7/");
    instances[0].open();
    await timers.tick(); // socket open: the poller stays quiet
    instances[0].receive({ type: "job", job: running({ progress: { epoch: 1 } }) });
    instances[0].receive({ type: "hello" }); // other message types are ignored
    instances[0].receive({ type: "job", job: { id: 8, status: "succeeded" } }); // another job's state too
    instances[0].receive({ type: "job", job: { id: 7, status: "succeeded", progress: {} } });
    const final = await w.done;
    assert.equal(final.status, "succeeded");
    assert.deepEqual(seen, [["running", "initial"], ["running", "socket"], ["succeeded", "socket"]]);
    assert.ok(instances[0].closed, "the socket is closed once the job is done");
    assert.equal(timers.repeats.size, 0, "polling stopped");
  });

  it("polls while the socket is down and reconnects", async () => {
    const { FakeSocket, instances } = fakeSockets();
    const timers = manualTimers();
    const states = [running({ progress: { epoch: 2 } }), { id: 7, status: "failed", message: "boom" }];
    const api = { get: async (path) => (assert.equal(path, "/api/jobs/7/"), states.shift()) };
    const seen = [];
    const w = watchJob(api, running(), (j, via) => seen.push(via), { WebSocketImpl: FakeSocket, location, ...timers });
    instances[0].drop();
    timers.runTimeouts();
    assert.equal(instances.length, 2, "reconnected");
    await timers.tick();
    await timers.tick();
    const final = await w.done;
    assert.equal(final.status, "failed");
    assert.deepEqual(seen, ["initial", "poll", "poll"]);
  });

  it("does not reconnect when the server refuses (4403) and resolves at once for finished jobs", async () => {
    const { FakeSocket, instances } = fakeSockets();
    const timers = manualTimers();
    watchJob({ get: async () => running() }, running(), () => {}, { WebSocketImpl: FakeSocket, location, ...timers });
    instances[0].drop(4403);
    timers.runTimeouts();
    assert.equal(instances.length, 1);
    const done = await watchJob({}, { id: 1, status: "cancelled" }, () => {}, { WebSocketImpl: FakeSocket, location, ...timers }).done;
    assert.equal(done.status, "cancelled");
    assert.equal(instances.length, 1, "no socket for a finished job");
  });
});
