// CT window/level: Hounsfield units → 8-bit grey. DOM-free.

/** CT presets (window width W, level L, both in HU): the same values the server converts uploads with. */
export const CT_PRESETS = Object.freeze([
  { id: "lung", label: "Lung", width: 1500, level: -600 },
  { id: "mediastinum", label: "Mediastinum", width: 400, level: 40 },
  { id: "soft_tissue", label: "Soft tissue", width: 350, level: 50 },
  { id: "bone", label: "Bone", width: 1800, level: 400 },
  { id: "brain", label: "Brain", width: 80, level: 40 },
]);

/**
 * Map values with a linear window (DICOM PS3.3 C.11.2.1.2, simplified to the continuous form):
 * level - width/2 → 0, level + width/2 → 255, clamped outside.
 * @param {ArrayLike<number>} values  HU values (Int16Array, Float32Array, …)
 * @returns {Uint8ClampedArray}
 */
export function applyWindow(values, { width, level }) {
  if (!(width > 0)) throw new RangeError(`window width must be positive, got ${width}`);
  const lo = level - width / 2;
  const scale = 255 / width;
  const out = new Uint8ClampedArray(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.round((values[i] - lo) * scale);
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
