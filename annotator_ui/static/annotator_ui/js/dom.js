// Small DOM helpers shared by the pages (the only modules besides canvas_view.js and pages/ that touch the DOM).

import { ApiClient, csrfFromCookie } from "./api.js";

/** The page's JSON config rendered by the Django view (`json_script`). */
export function pageConfig() {
  const el = document.getElementById("page-config");
  return el ? JSON.parse(el.textContent) : {};
}

export const api = new ApiClient({ csrfToken: () => csrfFromCookie(document.cookie) });

/** h("a", {href: "/x", class: "y"}, "text", child) → element. `on*` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = String(v); // CSSOM, not a style attribute: the CSP allows it
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const STATE_LABELS = { unlabeled: "Unlabeled", proposed: "Proposed", in_review: "In review", labeled: "Labeled" };

export function badge(state, label) {
  return h("span", { class: `badge ${state}` }, label ?? STATE_LABELS[state] ?? state);
}

let toastTimer = null;
/** A short message in the corner (role=status). */
export function toast(message, { error = false, ms = 4000 } = {}) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.classList.toggle("error", error);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), ms);
}

export function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A metric for a table cell: integers as they are, fractions with `digits` decimals, "–" when missing. */
export function fmtNumber(v, digits = 3) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "–";
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

/** True when a keyboard event comes from a text field (so shortcuts must not fire). */
export function isTyping(event) {
  const t = event.target;
  if (!(t instanceof HTMLElement)) return false;
  if (t.isContentEditable) return true;
  if (t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  if (t.tagName === "INPUT") return !["checkbox", "radio", "range", "button", "submit"].includes(t.type);
  return false;
}

/** Decode an image URL to RGBA pixels (same-origin). */
export async function loadPixels(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`could not load ${url} (HTTP ${response.status})`);
  const bitmap = await createImageBitmap(await response.blob());
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return { width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
}

/** Encode a binary mask as an opaque black/white PNG blob. */
export async function maskToPng(mask, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d");
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i] ? 255 : 0;
    const o = i * 4;
    data[o] = data[o + 1] = data[o + 2] = v;
    data[o + 3] = 255;
  }
  ctx.putImageData(new ImageData(data, width, height), 0, 0);
  return canvas.convertToBlob({ type: "image/png" });
}
