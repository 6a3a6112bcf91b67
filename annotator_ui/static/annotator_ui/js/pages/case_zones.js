// The report–mask link in the editor: the lung-zone grid over the scan (zones named in the report
// tinted, disagreeing zones outlined, R/L markers) and a table of per-zone agreement that follows the
// drawing and the report form live. The geometry and rules are zones.js, the server's own.

import { h } from "../dom.js";
import { LAYERS } from "../store.js";
import { describeCell, expectedCells, SIDES, ZONE_NAMES, zoneAgreement, zoneGrid } from "../zones.js";

const $ = (id) => document.getElementById(id);

/** Whether a template is a lung-infection report (its fields name the zones). */
export function hasZones(template) {
  const names = new Set(template.fields.map((f) => f.name));
  return names.has("laterality") && names.has("left_zones") && names.has("right_zones");
}

export class ZonePanel {
  /** The last agreement computed (zones.js zoneAgreement), or null. */
  agreement = null;

  #store;
  #canvasView;
  #prefs;
  #fields = () => null;
  #box = null;
  #frame = 0;
  #enabled;
  #hasReport = false;

  /**
   * @param {{store, canvasView, prefs, template, fields: () => object|null}} deps
   *   fields: the report fields to compare with (the form's while valid, else the saved report's)
   */
  constructor({ store, canvasView, prefs, template, fields }) {
    this.#store = store;
    this.#canvasView = canvasView;
    this.#prefs = prefs;
    this.#fields = fields;
    this.#enabled = hasZones(template);
    $("zones-section").hidden = !this.#enabled;
    $("zones-toggle").closest("label").hidden = !this.#enabled;
    if (!this.#enabled) return;
    $("zones-toggle").checked = !!prefs.get("zones");
    $("zones-toggle").addEventListener("change", (e) => this.show(e.target.checked));
    store.on("change", () => this.refresh());
    store.on("load", () => this.refresh());
  }

  get enabled() {
    return this.#enabled;
  }

  /** The body box the server scores with (`meta.body_box` of the case), else the whole image. */
  setBox(box) {
    this.#box = box ?? null;
    this.refresh();
  }

  show(on) {
    if (!this.#enabled) return;
    $("zones-toggle").checked = on;
    this.#prefs.set("zones", on);
    this.#draw();
  }

  toggle() {
    this.show(!$("zones-toggle").checked);
  }

  /** Recompute once per frame (a brush stroke changes the mask many times a second). */
  refresh() {
    if (!this.#enabled || this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.#compute();
    });
  }

  #compute() {
    const { width, height } = this.#store;
    const mask = this.#store.layer(LAYERS.EDIT);
    if (!mask) return;
    const fields = this.#fields() ?? {};
    // No report yet: still show what the mask covers, against an empty claim.
    const claim = expectedCells(fields) === null ? { laterality: null } : fields;
    this.agreement = zoneAgreement(claim, mask, width, height, { box: this.#box });
    this.#hasReport = expectedCells(fields) !== null;
    this.#renderTable(this.#hasReport);
    this.#draw();
  }

  #draw() {
    if (!this.agreement || !$("zones-toggle").checked) {
      this.#canvasView.setZones(null);
      return;
    }
    // Without a report there is nothing to agree with: the grid alone, no marks.
    const cells = this.#hasReport ? this.agreement.cells : [];
    this.#canvasView.setZones({ grid: zoneGrid(this.agreement.box), cells });
  }

  #renderTable(hasReport) {
    const cells = new Map(this.agreement.cells.map((c) => [c.key, c]));
    const yes = (b) => (b ? "yes" : "no");
    $("zone-table").tBodies[0].replaceChildren(
      ...ZONE_NAMES.map((zone) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, zone),
          ...SIDES.map((side) => {
            const c = cells.get(`${side} ${zone}`);
            const state = !hasReport ? "" : c.agree ? "agree" : "disagree";
            return h(
              "td",
              { class: `zone ${state}`, "data-zone": c.key, title: hasReport ? describeCell(c) : "" },
              h("span", { class: "zone-mark", "aria-hidden": "true" }, !hasReport ? "" : c.agree ? "✓ " : "✗ "),
              `report ${hasReport ? yes(c.claimed) : "–"} · mask ${yes(c.observed)}`,
            );
          }),
        ),
      ),
    );
    const summary = $("zones-summary");
    if (!hasReport) {
      summary.textContent = "No lung-infection report yet: the table shows where the mask is.";
      summary.className = "small muted";
    } else if (!this.agreement.disagree.length) {
      summary.textContent = "Report and mask agree in every zone.";
      summary.className = "small ok";
    } else {
      const words = this.agreement.cells.filter((c) => !c.agree).map(describeCell);
      summary.textContent = `Disagree: ${words.join("; ")} (score ${this.agreement.score}).`;
      summary.className = "small error";
    }
  }
}
