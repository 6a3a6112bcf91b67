// Image display: window/level for every scan. DOM-free.
//
// A display is {width, level, invert}: values level - width/2 .. level + width/2 map linearly to
// black .. white (so 8-bit values a..b are the window {width: b - a, level: (a + b) / 2}) (white .. black when inverted), clamped outside. The values are Hounsfield units
// for a DICOM case whose modality-LUT values were loaded, and grey levels 0..255 for every other
// scan (PNG, JPEG, TIFF, and a DICOM case before its values arrive). Brightness/contrast is the same
// linear map in other words: brightness moves the level, contrast scales the width, both relative to
// the scan's base window (the one "Reset" returns to).

/** CT presets (window width W, level L, both in HU): the same values the server converts uploads with. */
export const CT_PRESETS = Object.freeze([
  { id: "lung", label: "Lung", width: 1500, level: -600 },
  { id: "mediastinum", label: "Mediastinum", width: 400, level: 40 },
  { id: "soft_tissue", label: "Soft tissue", width: 350, level: 50 },
  { id: "bone", label: "Bone", width: 1800, level: 400 },
  { id: "brain", label: "Brain", width: 80, level: 40 },
]);

/**
 * Presets for 8-bit scans (X-ray, photographs of films, histology). "auto" is computed per scan
 * from its histogram; the detail windows stretch one half of the grey range over the whole display,
 * e.g. to read a faint ground-glass haze over dark lung fields.
 */
export const GREY_PRESETS = Object.freeze([
  { id: "full", label: "Full range", width: 255, level: 127.5 },
  { id: "auto", label: "Auto contrast (1st–99th percentile)" },
  { id: "dark", label: "Dark detail (0–127)", width: 127, level: 63.5 },
  { id: "bright", label: "Bright detail (128–255)", width: 127, level: 191.5 },
]);

/** The value domains a display works in. */
export const DOMAIN = Object.freeze({ GREY: "grey", HU: "hu" });

/** Presets for a domain (HU: the CT presets plus auto contrast). */
export function presetsFor(domain) {
  return domain === DOMAIN.HU ? [{ id: "auto", label: "Auto contrast (1st–99th percentile)" }, ...CT_PRESETS] : GREY_PRESETS;
}

const MIN_WIDTH = { [DOMAIN.GREY]: 2, [DOMAIN.HU]: 1 };

/**
 * Map values with a linear window (DICOM PS3.3 C.11.2.1.2, simplified to the continuous form):
 * level - width/2 → 0, level + width/2 → 255, clamped outside; `invert` flips black and white.
 * @param {ArrayLike<number>} values  HU values (Int16Array, Float32Array, …) or grey levels
 * @returns {Uint8ClampedArray}
 */
export function applyWindow(values, { width, level, invert = false }) {
  if (!(width > 0)) throw new RangeError(`window width must be positive, got ${width}`);
  const lo = level - width / 2;
  const scale = 255 / width;
  const out = new Uint8ClampedArray(values.length);
  if (invert) for (let i = 0; i < values.length; i++) out[i] = 255 - Math.round((values[i] - lo) * scale);
  else for (let i = 0; i < values.length; i++) out[i] = Math.round((values[i] - lo) * scale);
  return out;
}

/** The 256-entry lookup table of a window for 8-bit input (one table, applied per channel). */
export function windowLUT(display) {
  const grey = new Uint8Array(256);
  for (let i = 0; i < 256; i++) grey[i] = i;
  return applyWindow(grey, display);
}

/** Whether a display leaves 8-bit values as they are (full range, not inverted). */
export function isIdentity(display, domain = DOMAIN.GREY) {
  return domain === DOMAIN.GREY && !display.invert && display.width === 255 && display.level === 127.5;
}

/**
 * RGBA pixels of an 8-bit scan through a window: R, G and B each through the same table (colour
 * scans keep their hue), alpha untouched.
 */
export function windowRGBA(rgba, display) {
  const lut = windowLUT(display);
  const out = new Uint8ClampedArray(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    out[i] = lut[rgba[i]];
    out[i + 1] = lut[rgba[i + 1]];
    out[i + 2] = lut[rgba[i + 2]];
    out[i + 3] = rgba[i + 3];
  }
  return out;
}

/** Grey levels → opaque RGBA, ready for ImageData. */
export function greyToRGBA(grey) {
  const out = new Uint8ClampedArray(grey.length * 4);
  for (let i = 0; i < grey.length; i++) {
    const o = i * 4;
    out[o] = out[o + 1] = out[o + 2] = grey[i];
    out[o + 3] = 255;
  }
  return out;
}

/** The first channel of RGBA pixels as grey levels (for image-guided flood fill). */
export function rgbaToGrey(rgba) {
  const out = new Uint8Array(rgba.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = rgba[i * 4];
  return out;
}

/** The mean of R, G and B per pixel, unrounded (what numpy's ``image.mean(axis=2)`` gives). */
export function rgbaMean(rgba) {
  const out = new Float32Array(rgba.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = (rgba[i * 4] + rgba[i * 4 + 1] + rgba[i * 4 + 2]) / 3;
  return out;
}

/**
 * The `low` and `high` quantiles of `values` (nearest rank). Large float arrays are subsampled with
 * a fixed stride (at most `maxSamples` values), so the result is deterministic.
 */
export function quantiles(values, low = 0.01, high = 0.99, { maxSamples = 200_000 } = {}) {
  const n = values.length;
  if (!n) throw new RangeError("no values");
  const stride = Math.max(1, Math.ceil(n / maxSamples));
  const sample = new Float64Array(Math.ceil(n / stride));
  for (let i = 0, k = 0; i < n; i += stride, k++) sample[k] = values[i];
  sample.sort();
  const at = (q) => sample[Math.min(sample.length - 1, Math.max(0, Math.round(q * (sample.length - 1))))];
  return [at(low), at(high)];
}

/** A window spanning the 1st–99th percentile of `values` (at least the domain's minimum width). */
export function autoWindow(values, domain = DOMAIN.GREY, { low = 0.01, high = 0.99 } = {}) {
  const [a, b] = quantiles(values, low, high);
  const width = Math.max(MIN_WIDTH[domain], b - a);
  return { width, level: (a + b) / 2 };
}

/**
 * The base display of a scan, the one "Reset" returns to: for 8-bit scans the full range; for DICOM
 * values the window the server converted the upload with (`meta.window`: a centre and width, or the
 * min/max it stretched), else the values' auto window; inverted for MONOCHROME1 (white is low).
 * @returns {{width: number, level: number, invert: boolean}}
 */
export function baseWindow(domain, { meta = null, values = null } = {}) {
  if (domain === DOMAIN.GREY) return { width: 255, level: 127.5, invert: false };
  const invert = meta?.photometric === "MONOCHROME1";
  const w = meta?.window;
  if (w && Number.isFinite(w.width) && w.width > 0 && Number.isFinite(w.center)) {
    return { width: w.width, level: w.center, invert };
  }
  if (w && Number.isFinite(w.min) && Number.isFinite(w.max) && w.max > w.min) {
    return { width: w.max - w.min, level: (w.min + w.max) / 2, invert };
  }
  if (values) return { ...autoWindow(values, domain), invert };
  return { width: 1500, level: -600, invert };
}

/** Whether a DICOM case has grey values to window (not a palette or colour picture). */
export function hasWindowableValues(meta) {
  return typeof meta?.photometric === "string" && meta.photometric.startsWith("MONOCHROME");
}

/** Resolve a preset id to a window for these values (auto contrast needs them). */
export function presetWindow(id, domain, values = null) {
  const preset = presetsFor(domain).find((p) => p.id === id);
  if (!preset) throw new RangeError(`unknown ${domain} preset ${id}`);
  if (id === "auto") {
    if (!values) throw new RangeError("auto contrast needs the scan's values");
    return autoWindow(values, domain);
  }
  return { width: preset.width, level: preset.level };
}

/**
 * Window after a drag of (dx, dy) CSS pixels that started at `start`: right widens the window
 * (less contrast), left narrows it; up brightens (lowers the level), down darkens. One pixel moves
 * by `span / 400`, where span is the base window's width, so a 400-pixel drag sweeps a whole range.
 */
export function dragWindow(start, dx, dy, { span = 255, domain = DOMAIN.GREY } = {}) {
  const k = span / 400;
  return {
    width: Math.max(MIN_WIDTH[domain], start.width + dx * k),
    level: start.level + dy * k,
  };
}

/**
 * Brightness and contrast (each -100..100, 0 = the base window) of a window.
 * Brightness +100 lowers the level by half the base width; contrast +100 quarters the width.
 */
export function toBrightnessContrast(win, base) {
  return {
    brightness: ((base.level - win.level) / (base.width / 2)) * 100,
    contrast: -50 * Math.log2(win.width / base.width),
  };
}

/** The window for a brightness and contrast (inverse of `toBrightnessContrast`). */
export function fromBrightnessContrast({ brightness, contrast }, base) {
  return {
    level: base.level - (brightness / 100) * (base.width / 2),
    width: base.width * 2 ** (-contrast / 50),
  };
}

/**
 * The remembered display of one domain: {preset: id|null, width, level, invert}. Bad or missing
 * values fall back to the base window (a stored preference must never break the view).
 */
export function restoreDisplay(saved, domain, base, values = null) {
  const invert = typeof saved?.invert === "boolean" ? saved.invert : !!base.invert;
  if (saved?.preset) {
    try {
      return { preset: saved.preset, invert, ...presetWindow(saved.preset, domain, values) };
    } catch {
      // an unknown preset: fall through to the numbers or the base
    }
  }
  if (saved && Number.isFinite(saved.width) && saved.width > 0 && Number.isFinite(saved.level)) {
    return { preset: null, invert, width: saved.width, level: saved.level };
  }
  return { preset: null, invert, width: base.width, level: base.level };
}
