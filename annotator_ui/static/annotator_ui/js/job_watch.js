// Follow one job until it finishes: the websocket /ws/jobs/{id}/ first, REST polling while the socket is
// down (reconnecting with backoff), so progress never freezes. DOM-free: the WebSocket constructor, the
// page location and the timers are injectable, which is how tests/js/job_watch.test.mjs drives it.

import { paths, socketUrl } from "./endpoints.js";
import { isFinished, jobFromMessage } from "./jobs.js";

const OPEN = 1;

/**
 * @param {{get: (path: string) => Promise<object>}} api   the server adapter (ApiClient)
 * @param {{id: number, status: string}} job               the job as returned when it was created
 * @param {(job: object, via: "initial"|"socket"|"poll") => void} onUpdate  every new state and how it came
 * @returns {{done: Promise<object>, stop: () => void}}    `done` resolves with the final state
 */
export function watchJob(
  api,
  job,
  onUpdate = () => {},
  {
    WebSocketImpl = globalThis.WebSocket,
    location = globalThis.location,
    pollMs = 2000,
    setTimer = (fn, ms) => setTimeout(fn, ms),
    setRepeat = (fn, ms) => setInterval(fn, ms),
    clearRepeat = (id) => clearInterval(id),
  } = {},
) {
  let socket = null;
  let poll = null;
  let stopped = false;
  let resolve;
  const done = new Promise((r) => (resolve = r));
  const stop = () => {
    stopped = true;
    clearRepeat(poll);
    socket?.close();
  };
  const update = (j, via) => {
    if (stopped || !j || j.id !== job.id) return;
    onUpdate(j, via);
    if (isFinished(j)) {
      stop();
      resolve(j);
    }
  };
  onUpdate(job, "initial");
  if (isFinished(job)) {
    resolve(job);
    return { done, stop };
  }
  let retries = 0;
  const connect = () => {
    if (stopped) return;
    socket = new WebSocketImpl(socketUrl(paths.jobSocket(job.id), location));
    socket.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type && msg.type !== "job") return;
      retries = 0;
      update(jobFromMessage(msg), "socket");
    });
    socket.addEventListener("close", (e) => {
      if (stopped || e.code === 4403 || e.code === 4404) return;
      retries += 1;
      setTimer(connect, Math.min(10000, 500 * 2 ** retries));
    });
  };
  connect();
  poll = setRepeat(async () => {
    if (socket?.readyState === OPEN) return;
    try {
      update(await api.get(paths.job(job.id)), "poll");
    } catch {
      // keep trying; the socket may come back
    }
  }, pollMs);
  return { done, stop };
}
