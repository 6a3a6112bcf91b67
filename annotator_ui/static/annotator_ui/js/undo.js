// Undo by change set, after annotorious' UndoStack: the stack listens to the store, records every
// local change, and groups the changes of one gesture (a brush stroke) into one undo step.
// Undo and redo re-apply the recorded change sets through the store with their own origin, so
// they are not recorded again.

import { Emitter } from "./events.js";
import { Origin } from "./store.js";

export class UndoStack extends Emitter {
  #undo = [];
  #redo = [];
  #group = null;
  #limit;
  #store;
  #off;

  constructor(store, { limit = 200 } = {}) {
    super();
    this.#store = store;
    this.#limit = limit;
    this.#off = [
      store.on("change", ({ changes, origin }) => {
        if (origin === Origin.LOCAL) this.#record(changes);
      }),
      store.on("load", () => this.clear()),
    ];
  }

  dispose() {
    for (const off of this.#off) off();
  }

  get canUndo() {
    return this.#undo.length > 0 || (this.#group !== null && this.#group.length > 0);
  }

  get canRedo() {
    return this.#redo.length > 0;
  }

  get size() {
    return this.#undo.length;
  }

  /** Start a gesture: every change until `endGroup` becomes one undo step. */
  beginGroup() {
    this.endGroup();
    this.#group = [];
  }

  endGroup() {
    const group = this.#group;
    this.#group = null;
    if (group && group.length) this.#push(group);
  }

  #record(changes) {
    if (this.#group) {
      this.#group.push(...changes);
      if (this.#redo.length) {
        this.#redo = [];
        this.emit("change", this.#state());
      }
    } else {
      this.#push([...changes]);
    }
  }

  #push(changeSet) {
    this.#undo.push(changeSet);
    if (this.#undo.length > this.#limit) this.#undo.shift();
    this.#redo = [];
    this.emit("change", this.#state());
  }

  undo() {
    this.endGroup();
    const set = this.#undo.pop();
    if (!set) return false;
    this.#store.applyChanges(set, { reverse: true, origin: Origin.UNDO });
    this.#redo.push(set);
    this.emit("change", this.#state());
    return true;
  }

  redo() {
    const set = this.#redo.pop();
    if (!set) return false;
    this.#store.applyChanges(set, { reverse: false, origin: Origin.REDO });
    this.#undo.push(set);
    this.emit("change", this.#state());
    return true;
  }

  clear() {
    this.#undo = [];
    this.#redo = [];
    this.#group = null;
    this.emit("change", this.#state());
  }

  #state() {
    return { canUndo: this.canUndo, canRedo: this.canRedo };
  }
}
