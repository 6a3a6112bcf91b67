// The canvas view of the case editor: draws the scan, image overlays (probability heat map, version
// diff), the mask layers and the lung-zone grid through the one view transform, and turns DOM
// pointer/wheel events into input-machine events. It never changes masks itself: the input machine
// edits the store, and the view redraws on the store's change events.

import { LAYERS } from "./store.js";
import { outline } from "./mask.js";

/**
 * Overlay colours per layer ([r, g, b]); the edit layer is the clinician's working mask, filled.
 * Model layers are drawn as outlines (`outline: true`), so a proposal stays visible on top of an
 * identical editable copy instead of hiding under it.
 */
export const LAYER_STYLES = Object.freeze({
  [LAYERS.EDIT]: { label: "Your mask (editable)", color: [255, 64, 64] },
  [LAYERS.PROPOSAL]: { label: "Model proposal", color: [0, 220, 255], outline: true },
  [LAYERS.PREVIOUS]: { label: "Previous proposal", color: [255, 150, 0], outline: true },
  [LAYERS.THRESHOLD]: { label: "Proposal at threshold", color: [255, 240, 60], outline: true },
  [LAYERS.PSEUDO]: { label: "Pseudo-label (EPI)", color: [255, 210, 0] },
  [LAYERS.ACCEPTED]: { label: "Accepted mask", color: [40, 220, 90] },
  [LAYERS.THEIRS]: { label: "Their saved version", color: [200, 110, 255] },
});

const LAYER_ORDER = [
  LAYERS.THEIRS,
  LAYERS.PSEUDO,
  LAYERS.ACCEPTED,
  LAYERS.EDIT,
  LAYERS.PREVIOUS,
  LAYERS.PROPOSAL,
  LAYERS.THRESHOLD,
];

export class CanvasView {
  opacity = 0.5;
  outlineOnly = false;
  masksHidden = false;
  /** Layer name → visible. The edit layer is visible by default, references are off. */
  visible = new Map([[LAYERS.EDIT, true]]);

  #canvas;
  #ctx;
  #store;
  #input;
  #view;
  #image = null; // OffscreenCanvas with the scan
  #overlays = new Map(); // layer → OffscreenCanvas (image size)
  #imageOverlays = new Map(); // name → {canvas, opacity}: heat map, version diff (RGBA, image size)
  #zones = null; // {grid, cells} from zones.js, or null
  #frame = 0;
  #dpr = 1;
  #pointerId = null;
  #listeners = [];
  onViewChange = () => {};
  onHover = () => {};

  constructor({ canvas, store, input, view }) {
    this.#canvas = canvas;
    this.#ctx = canvas.getContext("2d");
    this.#store = store;
    this.#input = input;
    this.#view = view;
    store.on("load", () => this.#rebuildAll());
    store.on("reference", ({ layer }) => this.#rebuild(layer));
    store.on("change", ({ changes }) => {
      for (const c of changes) this.#updateOverlay(c.layer, c.indices);
      this.requestDraw();
    });
    input.on("preview", () => this.requestDraw());
    input.on("view", () => this.#viewChanged());
    input.on("state", ({ state }) => canvas.classList.toggle("panning", state === "panning"));
    input.on("tool", ({ tool }) => {
      canvas.classList.toggle("panning", tool === "pan");
      canvas.classList.toggle("windowing", tool === "window");
    });
    this.#bind();
    new ResizeObserver(() => this.#resize()).observe(canvas);
    this.#resize();
  }

  /** Show a scan: RGBA pixels of the store's size. */
  setImage(rgba, width, height) {
    const img = new OffscreenCanvas(width, height);
    img.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
    this.#image = img;
    this.requestDraw();
  }

  /** Show (or with null remove) an RGBA overlay of the image's size above the scan, below the masks. */
  setImageOverlay(name, rgba, { opacity = 1 } = {}) {
    if (!rgba) {
      this.#imageOverlays.delete(name);
    } else {
      const { width, height } = this.#store;
      const c = new OffscreenCanvas(width, height);
      c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
      this.#imageOverlays.set(name, { canvas: c, opacity });
    }
    this.requestDraw();
  }

  hasImageOverlay(name) {
    return this.#imageOverlays.has(name);
  }

  /**
   * The lung-zone grid: `grid` from zoneGrid (image coordinates) and per-cell agreement
   * ({side, zone, claimed, observed, agree}); null hides it.
   */
  setZones(zones) {
    this.#zones = zones;
    this.requestDraw();
  }

  setVisible(layer, on) {
    this.visible.set(layer, on);
    this.requestDraw();
  }

  setOpacity(v) {
    this.opacity = v;
    this.requestDraw();
  }

  setOutline(on) {
    this.outlineOnly = on;
    this.#rebuildAll();
  }

  fit() {
    const r = this.#canvas.getBoundingClientRect();
    if (this.#store.width) this.#view.fit(this.#store.width, this.#store.height, r.width, r.height, 12);
    this.#viewChanged();
  }

  /** Pan by a screen offset in CSS pixels (keyboard panning). */
  panBy(dx, dy) {
    this.#view.panBy(dx, dy);
    this.#viewChanged();
  }

  zoomBy(factor) {
    const r = this.#canvas.getBoundingClientRect();
    this.#view.zoomAt(r.width / 2, r.height / 2, factor);
    this.#viewChanged();
  }

  #viewChanged() {
    this.onViewChange(this.#view);
    this.requestDraw();
  }

  requestDraw() {
    if (this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.draw();
    });
  }

  #resize() {
    const r = this.#canvas.getBoundingClientRect();
    this.#dpr = window.devicePixelRatio || 1;
    this.#canvas.width = Math.max(1, Math.round(r.width * this.#dpr));
    this.#canvas.height = Math.max(1, Math.round(r.height * this.#dpr));
    this.requestDraw();
  }

  // --- overlays ---------------------------------------------------------------------------------

  #rebuildAll() {
    this.#overlays.clear();
    for (const name of this.#store.layerNames()) this.#rebuild(name);
    this.requestDraw();
  }

  #rebuild(layer) {
    const mask = this.#store.layer(layer);
    if (!mask) {
      this.#overlays.delete(layer);
      this.requestDraw();
      return;
    }
    const { width, height } = this.#store;
    const style = LAYER_STYLES[layer] ?? LAYER_STYLES.theirs;
    const shown = this.outlineOnly || style.outline ? outline(mask, width, height) : mask;
    const [r, g, b] = style.color;
    const data = new Uint8ClampedArray(width * height * 4);
    for (let i = 0; i < shown.length; i++) {
      if (!shown[i]) continue;
      const o = i * 4;
      data[o] = r;
      data[o + 1] = g;
      data[o + 2] = b;
      data[o + 3] = 255;
    }
    const canvas = new OffscreenCanvas(width, height);
    canvas.getContext("2d").putImageData(new ImageData(data, width, height), 0, 0);
    this.#overlays.set(layer, canvas);
    this.requestDraw();
  }

  /** Repaint only the changed pixels' bounding box (outline mode needs neighbours: rebuild). */
  #updateOverlay(layer, indices) {
    const overlay = this.#overlays.get(layer);
    if (!overlay || this.outlineOnly || LAYER_STYLES[layer]?.outline || indices.length === 0) return this.#rebuild(layer);
    const { width } = this.#store;
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -1;
    let y1 = -1;
    for (const i of indices) {
      const x = i % width;
      const y = (i - x) / width;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    const w = x1 - x0 + 1;
    const hgt = y1 - y0 + 1;
    const mask = this.#store.layer(layer);
    const [r, g, b] = (LAYER_STYLES[layer] ?? LAYER_STYLES.theirs).color;
    const data = new Uint8ClampedArray(w * hgt * 4);
    for (let y = 0; y < hgt; y++) {
      for (let x = 0; x < w; x++) {
        if (!mask[(y0 + y) * width + x0 + x]) continue;
        const o = (y * w + x) * 4;
        data[o] = r;
        data[o + 1] = g;
        data[o + 2] = b;
        data[o + 3] = 255;
      }
    }
    overlay.getContext("2d").putImageData(new ImageData(data, w, hgt), x0, y0);
  }

  // --- drawing ----------------------------------------------------------------------------------

  draw() {
    const ctx = this.#ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.#canvas.width, this.#canvas.height);
    if (!this.#image) return;
    ctx.setTransform(...this.#view.canvasMatrix(this.#dpr));
    ctx.imageSmoothingEnabled = this.#view.scale < 1;
    ctx.drawImage(this.#image, 0, 0);
    if (!this.masksHidden) {
      ctx.imageSmoothingEnabled = false;
      for (const { canvas, opacity } of this.#imageOverlays.values()) {
        ctx.globalAlpha = opacity;
        ctx.drawImage(canvas, 0, 0);
      }
      for (const layer of LAYER_ORDER) {
        const overlay = this.#overlays.get(layer);
        if (!overlay || !this.visible.get(layer)) continue;
        const outlined = this.outlineOnly || LAYER_STYLES[layer]?.outline;
        ctx.globalAlpha = outlined ? Math.max(0.85, this.opacity) : this.opacity;
        ctx.drawImage(overlay, 0, 0);
      }
      ctx.globalAlpha = 1;
    }
    ctx.setTransform(this.#dpr, 0, 0, this.#dpr, 0, 0);
    if (this.#zones) this.#drawZones(ctx);
    this.#drawPreview(ctx);
  }

  /** The zone grid in screen space: claimed zones tinted, disagreeing zones outlined in red, labels, R/L markers. */
  #drawZones(ctx) {
    const { grid, cells } = this.#zones;
    const v = this.#view;
    const status = new Map((cells ?? []).map((c) => [`${c.side} ${c.zone}`, c]));
    ctx.save();
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textBaseline = "top";
    for (const cell of grid.cells) {
      const a = v.imageToScreen(cell.x, cell.y);
      const b = v.imageToScreen(cell.x + cell.width, cell.y + cell.height);
      const st = status.get(`${cell.side} ${cell.zone}`);
      if (st?.claimed) {
        ctx.fillStyle = "rgba(90, 170, 255, 0.16)";
        ctx.fillRect(a.x, a.y, b.x - a.x, b.y - a.y);
      }
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.6)";
      ctx.strokeRect(a.x + 0.5, a.y + 0.5, b.x - a.x - 1, b.y - a.y - 1);
      if (st && !st.agree) {
        ctx.setLineDash([]);
        ctx.lineWidth = 2.5;
        ctx.strokeStyle = "rgba(255, 70, 70, 0.95)";
        ctx.strokeRect(a.x + 2, a.y + 2, b.x - a.x - 4, b.y - a.y - 4);
      }
      const mark = !st ? "" : st.agree ? " ✓" : " ✗";
      const text = `${cell.side === "left" ? "L" : "R"} ${cell.zone}${mark}`;
      const w = ctx.measureText(text).width + 8;
      if (b.x - a.x > w && b.y - a.y > 18) {
        ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
        ctx.fillRect(a.x + 4, a.y + 4, w, 17);
        ctx.fillStyle = st && !st.agree ? "#ff9a9a" : "#ffffff";
        ctx.fillText(text, a.x + 8, a.y + 6);
      }
    }
    // Orientation: the patient's right is on the image's left (radiological display).
    const [top, bottom, left, right] = grid.box;
    const midY = (top + bottom) / 2;
    ctx.setLineDash([]);
    ctx.font = "700 18px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const [label, x, align] of [
      ["R", left, "right"],
      ["L", right, "left"],
    ]) {
      const p = v.imageToScreen(x, midY);
      ctx.textAlign = align;
      const cssWidth = this.#canvas.width / this.#dpr;
      const px = align === "right" ? Math.max(18, p.x - 6) : Math.min(cssWidth - 18, p.x + 6);
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.fillRect(align === "right" ? px - 16 : px - 2, p.y - 12, 18, 24);
      ctx.fillStyle = "#ffe14d";
      ctx.fillText(label, px, p.y);
    }
    ctx.restore();
  }

  #drawPreview(ctx) {
    const input = this.#input;
    const v = this.#view;
    if (input.state === "polygon" && input.vertices.length) {
      ctx.strokeStyle = "#ffe14d";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      input.vertices.forEach((p, i) => {
        const s = v.imageToScreen(p.x, p.y);
        if (i === 0) ctx.moveTo(s.x, s.y);
        else ctx.lineTo(s.x, s.y);
      });
      if (input.hover) {
        const s = v.imageToScreen(input.hover.x, input.hover.y);
        ctx.lineTo(s.x, s.y);
      }
      ctx.stroke();
      ctx.fillStyle = "#ffe14d";
      for (const p of input.vertices) {
        const s = v.imageToScreen(p.x, p.y);
        ctx.fillRect(s.x - 3, s.y - 3, 6, 6);
      }
    }
    if ((input.tool === "brush" || input.tool === "eraser") && input.hover) {
      const s = v.imageToScreen(input.hover.x, input.hover.y);
      ctx.strokeStyle = input.tool === "eraser" ? "#ffffff" : "#ff7070";
      ctx.setLineDash(input.tool === "eraser" ? [4, 3] : []);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(s.x, s.y, Math.max(1, input.brushRadius * v.scale), 0, Math.PI * 2);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  // --- input ------------------------------------------------------------------------------------

  /** DOM pointer event → input-machine event, through the one pointer→image transform. */
  #event(type, e) {
    const rect = this.#canvas.getBoundingClientRect();
    return {
      type,
      image: this.#view.pointerToImage(e.clientX, e.clientY, rect),
      screen: { x: e.clientX - rect.left, y: e.clientY - rect.top },
      button: e.button,
      shiftKey: e.shiftKey,
      altKey: e.altKey,
      ctrlKey: e.ctrlKey || e.metaKey,
    };
  }

  #bind() {
    const c = this.#canvas;
    const on = (type, fn, opts) => {
      c.addEventListener(type, fn, opts);
      this.#listeners.push([type, fn]);
    };
    on("pointerdown", (e) => {
      if (this.#pointerId !== null) return;
      c.focus({ preventScroll: true });
      this.#pointerId = e.pointerId;
      c.setPointerCapture(e.pointerId);
      e.preventDefault();
      this.#input.handle(this.#event("down", e));
    });
    on("pointermove", (e) => {
      const ev = this.#event("move", e);
      const { width, height } = this.#store;
      const x = Math.floor(ev.image.x);
      const y = Math.floor(ev.image.y);
      this.onHover(x >= 0 && y >= 0 && x < width && y < height ? { x, y } : null);
      if (this.#pointerId !== null && e.pointerId !== this.#pointerId) return;
      // Coalesced events keep fast strokes smooth at low frame rates.
      const samples = this.#pointerId !== null && e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      if (samples.length > 1) for (const s of samples) this.#input.handle(this.#event("move", s));
      else this.#input.handle(ev);
    });
    const end = (type) => (e) => {
      if (e.pointerId !== this.#pointerId) return;
      this.#pointerId = null;
      this.#input.handle(this.#event(type, e));
    };
    on("pointerup", end("up"));
    on("pointercancel", end("cancel"));
    on("pointerleave", () => {
      this.#input.hover = null;
      this.onHover(null);
      this.requestDraw();
    });
    on("dblclick", (e) => this.#input.handle(this.#event("dblclick", e)));
    on("contextmenu", (e) => e.preventDefault());
    on(
      "wheel",
      (e) => {
        e.preventDefault();
        const rect = c.getBoundingClientRect();
        const factor = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
        this.#view.zoomAt(e.clientX - rect.left, e.clientY - rect.top, factor);
        this.#viewChanged();
      },
      { passive: false },
    );
  }
}
