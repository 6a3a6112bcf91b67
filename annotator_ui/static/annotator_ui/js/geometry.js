// The view transform: image-pixel coordinates ↔ screen (CSS pixel) coordinates of the canvas.
//   screen = image * scale + (tx, ty)
// `pointerToImage` is the ONE place a pointer position becomes an image position; the canvas view
// and the input machine use nothing else. DOM-free: callers pass the canvas' bounding rectangle.

export class ViewTransform {
  constructor({ scale = 1, tx = 0, ty = 0, minScale = 0.05, maxScale = 64 } = {}) {
    if (!(minScale > 0) || !(maxScale >= minScale)) throw new RangeError("need 0 < minScale <= maxScale");
    this.minScale = minScale;
    this.maxScale = maxScale;
    this.scale = clamp(scale, minScale, maxScale);
    this.tx = tx;
    this.ty = ty;
  }

  imageToScreen(x, y) {
    return { x: x * this.scale + this.tx, y: y * this.scale + this.ty };
  }

  screenToImage(sx, sy) {
    return { x: (sx - this.tx) / this.scale, y: (sy - this.ty) / this.scale };
  }

  /**
   * Client (viewport) coordinates of a pointer event → continuous image coordinates.
   * `rect` is the canvas' getBoundingClientRect(); pixel (i, j) covers [i, i+1) × [j, j+1).
   */
  pointerToImage(clientX, clientY, rect) {
    return this.screenToImage(clientX - rect.left, clientY - rect.top);
  }

  /** The image pixel under a client position, or null outside a width × height image. */
  pixelAt(clientX, clientY, rect, width, height) {
    const p = this.pointerToImage(clientX, clientY, rect);
    const x = Math.floor(p.x);
    const y = Math.floor(p.y);
    return x >= 0 && y >= 0 && x < width && y < height ? { x, y } : null;
  }

  /** Multiply the zoom by `factor`, keeping the image point under screen (sx, sy) fixed. */
  zoomAt(sx, sy, factor) {
    const next = clamp(this.scale * factor, this.minScale, this.maxScale);
    const p = this.screenToImage(sx, sy);
    this.scale = next;
    this.tx = sx - p.x * next;
    this.ty = sy - p.y * next;
    return this;
  }

  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    return this;
  }

  /** Fit a width × height image centred in a viewWidth × viewHeight view, with a margin in CSS pixels. */
  fit(width, height, viewWidth, viewHeight, margin = 8) {
    const s = Math.min((viewWidth - 2 * margin) / width, (viewHeight - 2 * margin) / height);
    this.scale = clamp(s > 0 ? s : this.minScale, this.minScale, this.maxScale);
    this.tx = (viewWidth - width * this.scale) / 2;
    this.ty = (viewHeight - height * this.scale) / 2;
    return this;
  }

  /** The 2D-context matrix [a, b, c, d, e, f] that draws image pixels on a canvas with `dpr` device pixels per CSS pixel. */
  canvasMatrix(dpr = 1) {
    return [this.scale * dpr, 0, 0, this.scale * dpr, this.tx * dpr, this.ty * dpr];
  }

  /** The image rectangle visible in a viewWidth × viewHeight view (continuous coordinates). */
  visibleImageRect(viewWidth, viewHeight) {
    const a = this.screenToImage(0, 0);
    const b = this.screenToImage(viewWidth, viewHeight);
    return { x: a.x, y: a.y, width: b.x - a.x, height: b.y - a.y };
  }

  toJSON() {
    return { scale: this.scale, tx: this.tx, ty: this.ty };
  }
}

export function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}
