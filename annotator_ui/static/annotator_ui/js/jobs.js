// Job progress for the jobs & models page: normalize the websocket's JSON job states, compute the
// progress fraction, ETA text, per-epoch loss and Dice curves, and SVG paths for the plots. DOM-free.
//
// A job state is the server's job snapshot: {id, kind, status, progress: {phase, epoch, epochs, step,
// steps, losses, val_dice, eta_s, done, total, history: [{epoch, losses|loss, val_dice}]}, message, ...}.

export const FINISHED = Object.freeze(["succeeded", "failed", "cancelled"]);

/** The job state inside a websocket message: the snapshot itself or wrapped as {job: ...}. */
export function jobFromMessage(message) {
  const data = typeof message === "string" ? JSON.parse(message) : message;
  if (data && typeof data === "object" && data.job && typeof data.job === "object") return data.job;
  return data;
}

export function isFinished(job) {
  return FINISHED.includes(job?.status);
}

/** Progress in [0, 1]: epochs and steps for training, done/total for batch jobs. */
export function progressFraction(job) {
  if (!job) return 0;
  if (job.status === "succeeded") return 1;
  const p = job.progress ?? {};
  let f = 0;
  if (p.epochs > 0) {
    const epochDone = Math.max(0, (p.epoch ?? 0) - 1);
    const within = p.steps > 0 ? Math.min(1, (p.step ?? 0) / p.steps) : 0;
    const completed = (p.history ?? []).length;
    f = Math.max(completed, epochDone + within) / p.epochs;
  } else if (p.total > 0) {
    f = (p.done ?? 0) / p.total;
  } else if (typeof p.fraction === "number") {
    f = p.fraction;
  }
  return Math.min(1, Math.max(0, f));
}

/** "1 h 02 min", "3 min 05 s", "12 s"; "" when unknown. */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return `${m} min ${String(r).padStart(2, "0")} s`;
  return `${r} s`;
}

/** The total loss of a history entry or progress: `loss`, `losses.total`, `losses.loss`, or the sum of `losses`. */
export function totalLoss(entry) {
  if (!entry) return null;
  if (typeof entry.loss === "number") return entry.loss;
  const l = entry.losses;
  if (typeof l === "number") return l;
  if (l && typeof l === "object") {
    if (typeof l.total === "number") return l.total;
    if (typeof l.loss === "number") return l.loss;
    const values = Object.values(l).filter((v) => typeof v === "number");
    if (values.length) return values.reduce((a, b) => a + b, 0);
  }
  return null;
}

/** Per-epoch curves from progress.history: {loss: [[epoch, v]], dice: [[epoch, v]]}. */
export function curves(job) {
  const loss = [];
  const dice = [];
  for (const entry of job?.progress?.history ?? []) {
    const epoch = entry.epoch;
    if (typeof epoch !== "number") continue;
    const l = totalLoss(entry);
    if (l != null && Number.isFinite(l)) loss.push([epoch, l]);
    const d = entry.val_dice ?? entry.dice;
    if (typeof d === "number" && Number.isFinite(d)) dice.push([epoch, d]);
  }
  return { loss, dice };
}

/** One line of status text, e.g. "epoch 3/10 · step 12/40 · loss 0.412 · val Dice 0.731 · ETA 2 min 10 s". */
export function summary(job) {
  if (!job) return "";
  const p = job.progress ?? {};
  const parts = [];
  if (p.phase) parts.push(p.phase);
  if (p.epochs) parts.push(`epoch ${p.epoch ?? 0}/${p.epochs}`);
  if (p.steps) parts.push(`step ${p.step ?? 0}/${p.steps}`);
  if (p.total) parts.push(`${p.done ?? 0}/${p.total}`);
  const l = totalLoss(p);
  if (l != null) parts.push(`loss ${l.toFixed(3)}`);
  if (typeof p.val_dice === "number") parts.push(`val Dice ${p.val_dice.toFixed(3)}`);
  const eta = formatDuration(p.eta_s);
  if (eta && !isFinished(job)) parts.push(`ETA ${eta}`);
  return parts.join(" · ");
}

const DEVICE_NAMES = Object.freeze({ cpu: "CPU", cuda: "GPU" });

/**
 * What a job that has not reported progress yet is waiting for, from the server's `queue`, `queue_position` and
 * `device`: "Queued: 2nd in the training queue, to run on a CPU worker…", or that no worker of the queue is
 * running; "Starting on a GPU…" once claimed.
 * @param {{status: string, queue?: string, queue_position?: number|null, device?: string|null}} job
 */
export function waitingText(job) {
  if (!job) return "";
  const device = job.device ? (DEVICE_NAMES[job.device] ?? job.device) : null;
  if (job.status === "running") return device ? `Starting on the ${device}: preparing the data…` : "Preparing the data…";
  if (job.status !== "pending") return "";
  const queue = (job.queue || "").split(".").pop();
  const where = queue ? ` in the ${queue} queue` : "";
  const pos = job.queue_position;
  const place = typeof pos === "number" ? (pos <= 1 ? `next${where}` : `${ordinal(pos)}${where}`) : `waiting${where}`;
  if (!device) return `Queued: ${place}. No ${queue || "matching"} worker is running; start one to run this job.`;
  return `Queued: ${place}, to run on a ${device} worker…`;
}

function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] ?? "th";
  return `${n}${suffix}`;
}

/** [min, max] of the values, widened when flat so a single point still plots. */
export function extent(values, { includeZero = false } = {}) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) return [0, 1];
  if (includeZero) lo = Math.min(0, lo);
  if (hi - lo < 1e-9) {
    const pad = Math.abs(hi) > 0 ? Math.abs(hi) * 0.1 : 1;
    return [lo - pad, hi + pad];
  }
  return [lo, hi];
}

/**
 * SVG path data for points [[x, y], ...] in a width × height box with `pad` pixels of margin;
 * y grows upwards. Domains default to the data's extent.
 */
export function linePath(points, { width, height, pad = 4, xDomain, yDomain }) {
  if (!points.length) return "";
  const [x0, x1] = xDomain ?? extent(points.map((p) => p[0]));
  const [y0, y1] = yDomain ?? extent(points.map((p) => p[1]));
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  return points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
}
