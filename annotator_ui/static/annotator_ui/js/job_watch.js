// Follow one job until it finishes: the websocket /ws/jobs/{id}/ first, REST polling while the socket is
// down, so progress never freezes. Resolves with the final job state.

import { paths, socketUrl } from "./endpoints.js";
import { isFinished, jobFromMessage } from "./jobs.js";

/**
 * @param {import("./api.js").ApiClient} api
 * @param {{id: number, status: string}} job  the job as returned when it was created
 * @param {(job: object) => void} onUpdate    called with every new state
 * @returns {{done: Promise<object>, stop: () => void}}
 */
export function watchJob(api, job, onUpdate = () => {}, { pollMs = 2000 } = {}) {
  let socket = null;
  let poll = null;
  let stopped = false;
  let resolve;
  const done = new Promise((r) => (resolve = r));
  const stop = () => {
    stopped = true;
    clearInterval(poll);
    socket?.close();
  };
  const update = (j) => {
    if (stopped) return;
    onUpdate(j);
    if (isFinished(j)) {
      stop();
      resolve(j);
    }
  };
  onUpdate(job);
  if (isFinished(job)) {
    resolve(job);
    return { done, stop };
  }
  let retries = 0;
  const connect = () => {
    if (stopped) return;
    socket = new WebSocket(socketUrl(paths.jobSocket(job.id)));
    socket.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type && msg.type !== "job") return;
      retries = 0;
      update(jobFromMessage(msg));
    });
    socket.addEventListener("close", (e) => {
      if (stopped || e.code === 4403 || e.code === 4404) return;
      retries += 1;
      setTimeout(connect, Math.min(10000, 500 * 2 ** retries));
    });
  };
  connect();
  poll = setInterval(async () => {
    if (socket?.readyState === WebSocket.OPEN) return;
    try {
      update(await api.get(paths.job(job.id)));
    } catch {
      // keep trying; the socket may come back
    }
  }, pollMs);
  return { done, stop };
}
