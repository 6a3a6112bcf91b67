// The proposal panel of the editor: which model made the proposal and from which report, "the model
// found no lesion" for an empty one, the cold-start message when the project has no model yet, the
// probability map with a threshold slider ("use this threshold" makes it the editable mask), and the
// old/new toggle after proposing again with an edited report.

import { fmtDate, h } from "../dom.js";
import { paths } from "../endpoints.js";
import { LAYERS } from "../store.js";
import { areaAt, heatmapRGBA, probabilityStats, proposalEmptiness, thresholdMask } from "../threshold.js";

const $ = (id) => document.getElementById(id);

export class ProposalPanel {
  /** The training-readiness answer ({has_active_model, missing, accepted, needed}) or null. */
  readiness = null;

  #api;
  #session;
  #store;
  #canvasView;
  #prefs;
  #projectId;
  #onLayers;
  #prob = null; // uint8 probability map of the latest proposal
  #stats = null;
  #probFor = null; // mask id the map belongs to

  constructor({ api, session, store, canvasView, prefs, projectId, onLayers }) {
    this.#api = api;
    this.#session = session;
    this.#store = store;
    this.#canvasView = canvasView;
    this.#prefs = prefs;
    this.#projectId = projectId;
    this.#onLayers = onLayers;
    $("threshold").addEventListener("input", () => this.#previewThreshold());
    $("use-threshold").addEventListener("click", () => this.useThreshold());
    $("heatmap-toggle").checked = !!prefs.get("heatmap");
    $("heatmap-toggle").addEventListener("change", (e) => {
      prefs.set("heatmap", e.target.checked);
      this.#showHeatmap();
    });
    for (const radio of document.querySelectorAll('input[name="proposal-show"]')) {
      radio.addEventListener("change", () => this.#showWhich(radio.value));
    }
  }

  /** Ask the server whether a model exists and how many accepted cases a first one still needs. */
  async loadReadiness() {
    try {
      this.readiness = await this.#api.get(paths.readiness(this.#projectId));
    } catch {
      this.readiness = null;
    }
    this.#renderColdStart();
    return this.readiness;
  }

  get hasModel() {
    return this.readiness ? !!this.readiness.has_active_model : true;
  }

  #renderColdStart() {
    const box = $("cold-start");
    const r = this.readiness;
    const button = $("propose");
    if (!r || r.has_active_model) {
      box.hidden = true;
      button.disabled = false;
      button.removeAttribute("aria-describedby");
      return;
    }
    const more = r.missing > 0
      ? `Accept ${r.missing} more training case${r.missing === 1 ? "" : "s"} (${r.accepted} of ${r.needed} so far), then train the first model on the Jobs & models page.`
      : `There are enough accepted training cases (${r.accepted}); an admin can train the first model on the Jobs & models page.`;
    box.replaceChildren(h("strong", {}, "No model yet. "), more, " Until then, draw the mask yourself.");
    box.hidden = false;
    button.disabled = true;
    button.setAttribute("aria-describedby", "cold-start");
  }

  /** Render after a load: proposal info, empty state, probability map, old/new toggle. */
  async render() {
    const latest = this.#session.proposals()[0] ?? null;
    const previous = this.#session.previousProposal();
    const info = $("proposal-info");
    if (!latest) {
      info.textContent = this.hasModel ? "No proposal for this case yet." : "";
      $("proposal-empty").hidden = true;
      $("probability").hidden = true;
      $("proposal-compare").hidden = true;
      $("proposal-compare-text").hidden = true;
      this.#setProbabilities(null, null);
      return;
    }
    const by = latest.model_version != null ? `model v${latest.model_version}` : "a model";
    info.replaceChildren(
      `Version ${latest.version}, made by `,
      h("strong", { id: "proposal-model" }, by),
      ` on ${fmtDate(latest.created_at)}`,
      latest.report_text ? h("span", { class: "muted" }, ` from the report “${latest.report_text}”`) : ". It had no report.",
    );
    this.#renderCompare(latest, previous);
    if (this.#probFor !== latest.id) {
      const prob = await this.#session.probabilities(latest);
      this.#setProbabilities(latest, prob);
    }
    this.#renderEmpty(latest);
  }

  #renderEmpty(latest) {
    const { empty, probMax } = proposalEmptiness(latest, this.#stats);
    const el = $("proposal-empty");
    el.hidden = !empty;
    if (empty) {
      const p = probMax != null ? ` Its highest lesion probability anywhere is ${probMax.toFixed(2)}.` : "";
      el.textContent = `The model found no lesion in this scan.${p} If there is one, draw it${this.#prob ? " or lower the threshold below" : ""}; if there is none, accept the empty mask.`;
    }
  }

  #setProbabilities(mv, prob) {
    this.#probFor = mv?.id ?? null;
    this.#prob = prob;
    this.#stats = prob ? probabilityStats(prob) : null;
    $("probability").hidden = !prob;
    this.#store.setReference(LAYERS.THRESHOLD, null);
    this.#showHeatmap();
    if (prob) this.#areaText();
  }

  #showHeatmap() {
    const on = !!this.#prob && $("heatmap-toggle").checked;
    this.#canvasView.setImageOverlay("heatmap", on ? heatmapRGBA(this.#prob) : null, { opacity: 0.85 });
  }

  #threshold() {
    return Number($("threshold").value);
  }

  #areaText() {
    const t = this.#threshold();
    $("threshold-value").textContent = t.toFixed(2);
    const n = areaAt(this.#stats, t);
    const pct = (100 * n) / this.#stats.total;
    $("threshold-area").textContent = `${n} pixels (${pct.toFixed(1)} % of the scan) at ${t.toFixed(2)}; the proposal used 0.50.`;
  }

  #previewThreshold() {
    if (!this.#prob) return;
    this.#areaText();
    this.#store.setReference(LAYERS.THRESHOLD, thresholdMask(this.#prob, this.#threshold()));
    this.#canvasView.visible.set(LAYERS.THRESHOLD, true);
    this.#onLayers();
    this.#canvasView.requestDraw();
  }

  /** Make the proposal at the chosen threshold the editable mask (one undoable change). */
  useThreshold() {
    if (!this.#prob) return null;
    const change = this.#store.replace(thresholdMask(this.#prob, this.#threshold()));
    this.#store.setReference(LAYERS.THRESHOLD, null);
    this.#onLayers();
    return change;
  }

  #renderCompare(latest, previous) {
    const group = $("proposal-compare");
    const text = $("proposal-compare-text");
    group.hidden = !previous;
    text.hidden = !previous;
    if (!previous) return;
    const from = (m) => (m.report_text ? `from “${m.report_text}”` : "made without a report");
    text.textContent = `New (v${latest.version}) ${from(latest)}. Previous (v${previous.version}) ${from(previous)}.`;
    const which = document.querySelector('input[name="proposal-show"]:checked')?.value ?? "new";
    this.#showWhich(which);
  }

  /** Show the new or the previous proposal (the toggle after "propose again"). */
  #showWhich(which) {
    this.#canvasView.visible.set(LAYERS.PROPOSAL, which === "new");
    this.#canvasView.visible.set(LAYERS.PREVIOUS, which === "old");
    this.#prefs.set("layers", { [LAYERS.PROPOSAL]: which === "new", [LAYERS.PREVIOUS]: which === "old" }, { merge: true });
    this.#onLayers();
    this.#canvasView.requestDraw();
  }

  /** After "propose again": show the new proposal, with the old one a click away. */
  showNew() {
    const radio = document.querySelector('input[name="proposal-show"][value="new"]');
    radio.checked = true;
    this.#showWhich("new");
  }
}
