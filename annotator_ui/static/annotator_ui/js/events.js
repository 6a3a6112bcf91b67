// A tiny DOM-free event emitter shared by the store, the undo stack and the input machine.

export class Emitter {
  #listeners = new Map();

  /** Subscribe to `type`; returns a function that unsubscribes. */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type)?.delete(listener);
  }

  emit(type, detail) {
    for (const listener of [...(this.#listeners.get(type) ?? [])]) listener(detail);
  }
}
