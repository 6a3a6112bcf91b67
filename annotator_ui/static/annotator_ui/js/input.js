// The editor's input state machine, after VIA's explicit input states. DOM-free: the canvas view
// turns DOM pointer/keyboard events into plain events whose image coordinates come from the one
// pointer→image transform (ViewTransform.pointerToImage), and feeds them here.
//
//   state      event                         → next state  (effect)
//   idle       down, tool brush/eraser        → painting    (begin undo group, dab)
//   idle       down, middle button / space    → panning
//   idle       down, tool pan                 → panning
//   idle       down, tool window / Ctrl held  → windowing   (window/level drag starts)
//   idle       down, tool fill                → idle        (flood fill, one undo step)
//   idle       down, tool polygon             → polygon     (first vertex)
//   painting   move                           → painting    (stroke segment)
//   painting   up / cancel                    → idle        (end undo group)
//   panning    move                           → panning     (pan view)
//   panning    up / cancel                    → idle
//   windowing  move                           → windowing   (emit "window" with the drag so far)
//   windowing  up / cancel                    → idle        (emit "window" end; the page keeps the window)
//   polygon    down near first vertex (≥3)    → idle        (fill polygon)
//   polygon    down                           → polygon     (add vertex)
//   polygon    dblclick / Enter               → idle        (fill polygon, ≥3 vertices)
//   polygon    Backspace                      → polygon     (drop last vertex; none left → idle)
//   polygon    Escape / tool change           → idle        (discard)
//
// Events: {type: "down"|"move"|"up"|"cancel"|"dblclick", image: {x, y}, screen: {x, y},
//          button?: number, shiftKey?: boolean, altKey?: boolean, ctrlKey?: boolean}
//         {type: "keydown"|"keyup", key: string}

import { Emitter } from "./events.js";
import { floodIndices, polygonIndices, strokeIndices } from "./mask.js";
import { LAYERS } from "./store.js";

export const TOOLS = Object.freeze(["brush", "eraser", "polygon", "fill", "pan", "window"]);
export const STATES = Object.freeze({
  IDLE: "idle",
  PAINTING: "painting",
  PANNING: "panning",
  POLYGON: "polygon",
  WINDOWING: "windowing",
});

/** Screen distance (CSS px) within which a click on the first vertex closes a polygon. */
const CLOSE_DISTANCE = 8;

export class InputMachine extends Emitter {
  state = STATES.IDLE;
  tool = "brush";
  /** Brush radius in image pixels. */
  brushRadius = 6;
  /** Flood fill: "mask" fills the connected mask region; "image" follows grey levels within `fillTolerance`. */
  fillSource = "mask";
  fillTolerance = 12;
  /** Polygon vertices so far, in image coordinates. */
  vertices = [];
  /** Last pointer position in image coordinates (for the brush cursor and the polygon's rubber band). */
  hover = null;

  #store;
  #undo;
  #view;
  #image;
  #last = null;
  #lastScreen = null;
  #windowStart = null;
  #space = false;
  #erase = false;

  /**
   * @param {{store: import("./store.js").MaskStore, undo: import("./undo.js").UndoStack,
   *          view: import("./geometry.js").ViewTransform, image?: () => Uint8Array|null}} deps
   */
  constructor({ store, undo, view, image = () => null }) {
    super();
    this.#store = store;
    this.#undo = undo;
    this.#view = view;
    this.#image = image;
  }

  setTool(tool) {
    if (!TOOLS.includes(tool)) throw new RangeError(`unknown tool ${tool}`);
    if (this.state === STATES.POLYGON) this.#cancelPolygon();
    if (this.state === STATES.PAINTING) this.#endPaint();
    if (this.state === STATES.WINDOWING) {
      this.#windowStart = null;
      this.#to(STATES.IDLE);
      this.emit("window", { phase: "end" });
    }
    this.tool = tool;
    this.emit("tool", { tool });
  }

  setBrushRadius(r) {
    this.brushRadius = Math.min(200, Math.max(0.5, r));
    this.emit("preview", this.#preview());
  }

  handle(event) {
    switch (event.type) {
      case "keydown":
        return this.#keydown(event);
      case "keyup":
        if (event.key === " ") this.#space = false;
        return;
      case "move":
        this.hover = event.image;
        break;
      default:
        break;
    }
    switch (this.state) {
      case STATES.IDLE:
        return this.#idle(event);
      case STATES.PAINTING:
        return this.#painting(event);
      case STATES.PANNING:
        return this.#panning(event);
      case STATES.POLYGON:
        return this.#polygon(event);
      case STATES.WINDOWING:
        return this.#windowing(event);
      default:
        throw new Error(`bad state ${this.state}`);
    }
  }

  #to(state) {
    if (state !== this.state) {
      this.state = state;
      this.emit("state", { state });
    }
  }

  #idle(event) {
    if (event.type === "move") return this.emit("preview", this.#preview());
    if (event.type !== "down") return;
    this.hover = event.image;
    if (event.button === 1 || event.button === 2 || this.#space || this.tool === "pan") {
      this.#lastScreen = event.screen;
      return this.#to(STATES.PANNING);
    }
    if (event.button !== undefined && event.button !== 0) return;
    if (this.tool === "window" || event.ctrlKey) {
      this.#windowStart = event.screen;
      this.#to(STATES.WINDOWING);
      return this.emit("window", { phase: "start", dx: 0, dy: 0 });
    }
    if (this.tool === "brush" || this.tool === "eraser") {
      this.#erase = this.tool === "eraser" || !!event.shiftKey;
      this.#undo.beginGroup();
      this.#last = event.image;
      this.#dab(event.image, event.image);
      return this.#to(STATES.PAINTING);
    }
    if (this.tool === "fill") return this.#fill(event.image, !(event.shiftKey || event.altKey));
    if (this.tool === "polygon") {
      this.vertices = [event.image];
      this.#to(STATES.POLYGON);
      return this.emit("preview", this.#preview());
    }
  }

  #painting(event) {
    if (event.type === "move") {
      this.#dab(this.#last, event.image);
      this.#last = event.image;
    } else if (event.type === "up" || event.type === "cancel") {
      if (event.type === "up" && event.image) this.#dab(this.#last, event.image);
      this.#endPaint();
    }
  }

  #endPaint() {
    this.#undo.endGroup();
    this.#last = null;
    this.#to(STATES.IDLE);
  }

  #panning(event) {
    if (event.type === "move") {
      this.#view.panBy(event.screen.x - this.#lastScreen.x, event.screen.y - this.#lastScreen.y);
      this.#lastScreen = event.screen;
      this.emit("view", {});
    } else if (event.type === "up" || event.type === "cancel") {
      this.#lastScreen = null;
      this.#to(STATES.IDLE);
    }
  }

  /** Window/level drag: the page maps the offset since the press (CSS pixels) to a new window. */
  #windowing(event) {
    if (!["move", "up", "cancel"].includes(event.type)) return;
    const dx = event.screen.x - this.#windowStart.x;
    const dy = event.screen.y - this.#windowStart.y;
    if (event.type !== "cancel") this.emit("window", { phase: "move", dx, dy });
    if (event.type === "move") return;
    this.#windowStart = null;
    this.#to(STATES.IDLE);
    this.emit("window", { phase: "end" });
  }

  #polygon(event) {
    if (event.type === "move") return this.emit("preview", this.#preview());
    if (event.type === "dblclick") return this.#closePolygon();
    if (event.type === "cancel") return this.#cancelPolygon();
    if (event.type !== "down" || (event.button !== undefined && event.button !== 0)) return;
    const first = this.vertices[0];
    const a = this.#view.imageToScreen(first.x, first.y);
    const b = this.#view.imageToScreen(event.image.x, event.image.y);
    if (this.vertices.length >= 3 && Math.hypot(a.x - b.x, a.y - b.y) <= CLOSE_DISTANCE) return this.#closePolygon();
    this.vertices.push(event.image);
    this.emit("preview", this.#preview());
  }

  #keydown(event) {
    if (event.key === " ") this.#space = true;
    if (this.state !== STATES.POLYGON) return false;
    if (event.key === "Enter") {
      this.#closePolygon();
      return true;
    }
    if (event.key === "Escape") {
      this.#cancelPolygon();
      return true;
    }
    if (event.key === "Backspace") {
      this.vertices.pop();
      if (this.vertices.length === 0) this.#to(STATES.IDLE);
      this.emit("preview", this.#preview());
      return true;
    }
    return false;
  }

  #closePolygon() {
    const pts = this.vertices;
    this.vertices = [];
    this.#to(STATES.IDLE);
    if (pts.length >= 3) {
      const { width, height } = this.#store;
      this.#store.paint(polygonIndices(width, height, pts), 1);
    }
    this.emit("preview", this.#preview());
  }

  #cancelPolygon() {
    this.vertices = [];
    this.#to(STATES.IDLE);
    this.emit("preview", this.#preview());
  }

  #dab(from, to) {
    const { width, height } = this.#store;
    this.#store.paint(strokeIndices(width, height, from.x, from.y, to.x, to.y, this.brushRadius), this.#erase ? 0 : 1);
  }

  #fill(p, value) {
    const { width, height } = this.#store;
    const mask = this.#store.layer(LAYERS.EDIT);
    const image = this.fillSource === "image" ? this.#image() : null;
    const idx = floodIndices(mask, width, height, p.x, p.y, { image, tolerance: this.fillTolerance });
    this.#store.paint(idx, value);
  }

  #preview() {
    return { tool: this.tool, state: this.state, hover: this.hover, vertices: this.vertices, radius: this.brushRadius };
  }
}
