// Per-user, per-project preferences of the editor (display window, brush size, opacity, layer
// choices, overlays), kept between cases. DOM-free: the storage is injected (the browser passes
// localStorage, tests a Map-backed object), and an optional `remote` adapter mirrors every change to
// the server so the choices follow the user to another browser.

import { Emitter } from "./events.js";

/** What a user who never chose anything gets. */
export const DEFAULT_PREFS = Object.freeze({
  brushRadius: 6,
  opacity: 50,
  outline: false,
  layers: {},
  display: {},
  zones: true,
  heatmap: false,
  savedAt: 0, // when these choices were last changed (ms since the epoch): the newer copy wins
});

/** The storage key of one user's preferences in one project. */
export const prefsKey = (userId, projectId) => `lvit:prefs:u${userId}:p${projectId}`;

export class Preferences extends Emitter {
  #storage;
  #key;
  #remote;
  #values;
  #timer = null;
  #delay;
  #setTimer;
  #clearTimer;
  #now;

  /**
   * @param {{storage: {getItem(k: string): string|null, setItem(k: string, v: string): void},
   *          userId: number, projectId: number,
   *          remote?: {save(values: Object, options: {keepalive: boolean}): Promise<void>|void},
   *          initial?: Object, remoteDelayMs?: number, setTimer?: Function, clearTimer?: Function,
   *          now?: () => number}} options
   *   `initial`: the server's copy; the newer of it and this browser's copy wins (and the server is told
   *   when this browser's is newer). Changes reach `remote` at most once per `remoteDelayMs` (a slider
   *   being dragged sends its last value, not every step); `flush()` sends a pending one at once.
   */
  constructor({
    storage,
    userId,
    projectId,
    remote = null,
    initial = null,
    remoteDelayMs = 500,
    setTimer = (fn, ms) => setTimeout(fn, ms),
    clearTimer = (id) => clearTimeout(id),
    now = () => Date.now(),
  }) {
    super();
    this.#storage = storage;
    this.#key = prefsKey(userId, projectId);
    this.#remote = remote;
    this.#delay = remoteDelayMs;
    this.#setTimer = setTimer;
    this.#clearTimer = clearTimer;
    this.#now = now;
    let local = {};
    try {
      local = JSON.parse(storage.getItem(this.#key) ?? "{}") ?? {};
    } catch {
      local = {}; // a corrupt entry must not break the editor
    }
    const mine = sanitize(local);
    const server = sanitize(initial ?? {});
    const serverNewer = (server.savedAt ?? 0) >= (mine.savedAt ?? 0);
    this.#values = { ...structuredClone(DEFAULT_PREFS), ...(serverNewer ? { ...mine, ...server } : { ...server, ...mine }) };
    if (initial && !serverNewer) this.#scheduleRemote(); // the server missed this browser's last change
  }

  get(key) {
    return this.#values[key];
  }

  all() {
    return structuredClone(this.#values);
  }

  /** Set one key (a shallow merge for object values given as `merge`), persist, emit "change". */
  set(key, value, { merge = false } = {}) {
    const next = merge ? { ...(this.#values[key] ?? {}), ...value } : value;
    if (JSON.stringify(next) === JSON.stringify(this.#values[key])) return;
    this.#values[key] = next;
    this.#values.savedAt = this.#now();
    this.#persist();
    this.emit("change", { key, value: next });
  }

  #persist() {
    try {
      this.#storage.setItem(this.#key, JSON.stringify(this.#values));
    } catch {
      // storage full or disabled: the choice still holds for this page
    }
    this.#scheduleRemote();
  }

  #scheduleRemote() {
    if (!this.#remote) return;
    this.#clearTimer(this.#timer);
    this.#timer = this.#setTimer(() => this.#sendRemote(false), this.#delay);
  }

  #sendRemote(keepalive) {
    this.#clearTimer(this.#timer);
    this.#timer = null;
    Promise.resolve(this.#remote.save(this.all(), { keepalive })).catch(() => {}); // offline: the local copy holds
  }

  /** Send a pending change to the server now (the page is being left: `keepalive` lets the request outlive it). */
  flush() {
    if (this.#timer !== null && this.#remote) this.#sendRemote(true);
  }
}

function sanitize(values) {
  if (!values || typeof values !== "object" || Array.isArray(values)) return {};
  const out = {};
  for (const [k, v] of Object.entries(values)) if (k in DEFAULT_PREFS) out[k] = v;
  return out;
}
