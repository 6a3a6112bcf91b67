// The editor's image display: window/level presets, numbers, brightness/contrast, invert and reset
// for every scan (8-bit grey levels for PNG/JPEG/TIFF, Hounsfield units once a DICOM case's values
// arrive), the drag tool and Ctrl+drag, and the choice remembered per user and project. The maths is
// windowing.js; this module wires it to the toolbar menu and the canvas.

import { h } from "../dom.js";
import {
  applyWindow,
  baseWindow,
  DOMAIN,
  dragWindow,
  fromBrightnessContrast,
  greyToRGBA,
  isIdentity,
  presetsFor,
  presetWindow,
  restoreDisplay,
  rgbaToGrey,
  toBrightnessContrast,
  windowRGBA,
} from "../windowing.js";

const $ = (id) => document.getElementById(id);
const fmt = (v) => String(Math.round(v * 10) / 10);

export class DisplayControl {
  /** {preset, width, level, invert} in the current domain. */
  display = null;
  domain = DOMAIN.GREY;

  #canvasView;
  #prefs;
  #onGrey;
  #rgba = null; // the scan as uploaded (8-bit)
  #values = null; // HU values (DICOM)
  #width = 0;
  #height = 0;
  #meta = null;
  #base = null;
  #dragStart = null;
  #hideTimer = 0;

  /**
   * @param {{canvasView: import("../canvas_view.js").CanvasView, prefs: import("../prefs.js").Preferences,
   *          onGrey: (grey: Uint8Array) => void}} deps  onGrey: the displayed grey levels (image-guided fill)
   */
  constructor({ canvasView, prefs, onGrey }) {
    this.#canvasView = canvasView;
    this.#prefs = prefs;
    this.#onGrey = onGrey;
    $("display-preset").addEventListener("change", (e) => this.choosePreset(e.target.value || null));
    const numbers = () => {
      const width = Number($("display-width").value);
      const level = Number($("display-level").value);
      if (width > 0 && Number.isFinite(level)) this.apply({ ...this.display, preset: null, width, level });
    };
    $("display-width").addEventListener("change", numbers);
    $("display-level").addEventListener("change", numbers);
    const bc = () => {
      const win = fromBrightnessContrast(
        { brightness: Number($("display-brightness").value), contrast: Number($("display-contrast").value) },
        this.#base,
      );
      this.apply({ ...this.display, preset: null, ...win }, { fromSliders: true });
    };
    $("display-brightness").addEventListener("input", bc);
    $("display-contrast").addEventListener("input", bc);
    $("display-invert").addEventListener("change", (e) => this.setInvert(e.target.checked));
    $("display-reset").addEventListener("click", () => this.reset());
  }

  /** Show an 8-bit scan (every case first; DICOM cases until their values arrive). */
  setScan(rgba, width, height, meta = null) {
    this.#rgba = rgba;
    this.#width = width;
    this.#height = height;
    this.#meta = meta;
    if (!this.#values) this.#enter(DOMAIN.GREY);
  }

  /** Switch to a DICOM case's modality-LUT values (HU for CT). */
  setValues(values) {
    this.#values = values;
    this.#enter(DOMAIN.HU);
  }

  #enter(domain) {
    this.domain = domain;
    const values = domain === DOMAIN.HU ? this.#values : rgbaToGrey(this.#rgba);
    this.#base = baseWindow(domain, { meta: this.#meta, values });
    const saved = this.#prefs.get("display")?.[domain];
    this.#fillPresets();
    this.apply(restoreDisplay(saved, domain, this.#base, values), { persist: false });
    $("display-note").textContent =
      domain === DOMAIN.HU
        ? "Values in Hounsfield units from the DICOM original."
        : "Grey levels of the scan (0–255); the stored image is unchanged.";
  }

  #fillPresets() {
    const select = $("display-preset");
    const options = presetsFor(this.domain).map((p) =>
      h("option", { value: p.id }, p.width ? `${p.label} (W ${fmt(p.width)} / L ${fmt(p.level)})` : p.label),
    );
    select.replaceChildren(h("option", { value: "" }, "Custom"), ...options);
  }

  choosePreset(id) {
    if (!id) return;
    const values = this.domain === DOMAIN.HU ? this.#values : rgbaToGrey(this.#rgba);
    this.apply({ ...this.display, preset: id, ...presetWindow(id, this.domain, values) });
  }

  setInvert(on) {
    this.apply({ ...this.display, invert: !!on });
  }

  toggleInvert() {
    this.setInvert(!this.display.invert);
  }

  reset() {
    this.apply({ preset: null, ...this.#base });
  }

  /** A window/level drag from the input machine ({phase, dx, dy}). */
  drag({ phase, dx = 0, dy = 0 }) {
    if (phase === "start") {
      this.#dragStart = { ...this.display };
      return;
    }
    if (!this.#dragStart) return;
    if (phase === "move") {
      const win = dragWindow(this.#dragStart, dx, dy, { span: this.#base.width, domain: this.domain });
      this.apply({ ...this.#dragStart, preset: null, ...win }, { persist: false });
    } else {
      this.#dragStart = null;
      this.#persist();
    }
  }

  /** Draw the scan through `display`, update the controls, remember the choice. */
  apply(display, { persist = true, fromSliders = false } = {}) {
    this.display = display;
    let rgba;
    let grey;
    if (this.domain === DOMAIN.HU) {
      grey = applyWindow(this.#values, display);
      rgba = greyToRGBA(grey);
    } else {
      rgba = isIdentity(display) ? this.#rgba : windowRGBA(this.#rgba, display);
      grey = rgbaToGrey(rgba);
    }
    this.#canvasView.setImage(rgba, this.#width, this.#height);
    this.#onGrey(Uint8Array.from(grey));
    this.#syncControls(fromSliders);
    this.#flash();
    if (persist) this.#persist();
  }

  #persist() {
    const { preset, width, level, invert } = this.display;
    this.#prefs.set("display", { [this.domain]: { preset, width, level, invert } }, { merge: true });
  }

  #syncControls(fromSliders) {
    const d = this.display;
    $("display-preset").value = d.preset ?? "";
    $("display-width").value = fmt(d.width);
    $("display-level").value = fmt(d.level);
    $("display-invert").checked = !!d.invert;
    if (!fromSliders) {
      const { brightness, contrast } = toBrightnessContrast(d, this.#base);
      $("display-brightness").value = String(Math.round(Math.max(-100, Math.min(100, brightness))));
      $("display-contrast").value = String(Math.round(Math.max(-100, Math.min(100, contrast))));
    }
  }

  /** Show W/L on the stage for a moment after a change. */
  #flash() {
    const el = $("stage-window");
    const d = this.display;
    el.textContent = `W ${fmt(d.width)}  L ${fmt(d.level)}${d.invert ? "  inverted" : ""}`;
    el.hidden = false;
    clearTimeout(this.#hideTimer);
    this.#hideTimer = setTimeout(() => (el.hidden = true), 1500);
  }
}
