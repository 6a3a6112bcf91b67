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

  /**
   * @param {{storage: {getItem(k: string): string|null, setItem(k: string, v: string): void},
   *          userId: number, projectId: number, remote?: {save(values: Object): Promise<void>|void},
   *          initial?: Object, remoteDelayMs?: number, setTimer?: Function, clearTimer?: Function}} options
   *   `initial`: values from the server, newer than local ones. Changes reach `remote` at most once per
   *   `remoteDelayMs` (a slider being dragged sends its last value, not every step).
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
  }) {
    super();
    this.#storage = storage;
    this.#key = prefsKey(userId, projectId);
    this.#remote = remote;
    this.#delay = remoteDelayMs;
    this.#setTimer = setTimer;
    this.#clearTimer = clearTimer;
    let local = {};
    try {
      local = JSON.parse(storage.getItem(this.#key) ?? "{}") ?? {};
    } catch {
      local = {}; // a corrupt entry must not break the editor
    }
    this.#values = { ...structuredClone(DEFAULT_PREFS), ...sanitize(local), ...sanitize(initial ?? {}) };
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
    this.#persist();
    this.emit("change", { key, value: next });
  }

  #persist() {
    try {
      this.#storage.setItem(this.#key, JSON.stringify(this.#values));
    } catch {
      // storage full or disabled: the choice still holds for this page
    }
    if (!this.#remote) return;
    this.#clearTimer(this.#timer);
    this.#timer = this.#setTimer(() => {
      this.#timer = null;
      Promise.resolve(this.#remote.save(this.all())).catch(() => {}); // offline: the local copy still holds
    }, this.#delay);
  }
}

function sanitize(values) {
  if (!values || typeof values !== "object" || Array.isArray(values)) return {};
  const out = {};
  for (const [k, v] of Object.entries(values)) if (k in DEFAULT_PREFS) out[k] = v;
  return out;
}
