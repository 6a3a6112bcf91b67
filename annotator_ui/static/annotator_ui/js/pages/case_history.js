// The mask history of a case in the editor: every version with its author or model, a diff overlay
// against the version before it, and "restore as new version" (the history keeps every version).

import { fmtDate, h } from "../dom.js";
import { diffMasks, diffRGBA, historyRows } from "../history.js";

const $ = (id) => document.getElementById(id);

export class HistoryPanel {
  /** {version, against} while a comparison is shown, else null. */
  comparing = null;

  #session;
  #store;
  #canvasView;
  #onRestore;
  #savedVisibility = null;
  #onError;

  /**
   * @param {{session: import("../case_session.js").CaseSession, store, canvasView,
   *          onRestore: (mv: object) => Promise<void>, onError: (err: Error) => void}} deps
   */
  constructor({ session, store, canvasView, onRestore, onError }) {
    this.#session = session;
    this.#store = store;
    this.#canvasView = canvasView;
    this.#onRestore = onRestore;
    this.#onError = onError;
  }

  render() {
    const rows = historyRows(this.#session.masks);
    const head = this.#session.caseData?.head_version ?? null;
    const list = $("history-list");
    if (!rows.length) {
      list.replaceChildren(h("li", { class: "muted" }, "No mask versions yet."));
      return;
    }
    list.replaceChildren(
      ...rows.map(({ mask, compareWith, author, label }) => {
        const notes = [];
        const stats = mask.stats ?? {};
        if (stats.added != null) notes.push(`+${stats.added} / -${stats.removed} px vs v${stats.vs_version}`);
        if (stats.restored_from != null) notes.push(`restored from v${stats.restored_from}`);
        if (stats.conflict) notes.push("kept from a conflicting save");
        if (stats.accepted_without_report) notes.push("accepted without a report (confirmed)");
        const comparing = this.comparing?.version === mask.version;
        return h(
          "li",
          { "data-version": mask.version, class: mask.version === head ? "head" : "" },
          h(
            "div",
            { class: "history-line" },
            h("strong", {}, `v${mask.version}`),
            ` ${label} · ${author}`,
            mask.version === head ? h("span", { class: "badge" }, "current") : null,
          ),
          h("div", { class: "muted small" }, `${fmtDate(mask.created_at)} · ${mask.foreground} px${notes.length ? ` · ${notes.join(" · ")}` : ""}`),
          h(
            "div",
            { class: "actions" },
            h(
              "button",
              {
                type: "button",
                class: "small-button",
                "aria-pressed": String(comparing),
                onclick: () => this.toggleCompare(mask, compareWith),
                title: compareWith ? `Show what v${mask.version} changed from v${compareWith.version}` : "Show this version",
              },
              compareWith ? `Compare with v${compareWith.version}` : "Show",
            ),
            mask.version === head
              ? null
              : h(
                  "button",
                  { type: "button", class: "small-button", onclick: () => this.#restore(mask) },
                  "Restore as new version",
                ),
          ),
        );
      }),
    );
  }

  async toggleCompare(mask, against) {
    if (this.comparing?.version === mask.version) {
      this.stopCompare();
      return;
    }
    try {
      const [after, before] = await Promise.all([
        this.#session.maskPixels(mask),
        against ? this.#session.maskPixels(against) : null,
      ]);
      const diff = diffMasks(before, after);
      if (!this.#savedVisibility) this.#savedVisibility = new Map(this.#canvasView.visible);
      for (const name of this.#canvasView.visible.keys()) this.#canvasView.visible.set(name, false);
      this.#canvasView.setImageOverlay("diff", diffRGBA(diff, after.length, after), { opacity: 1 });
      this.comparing = { version: mask.version, against: against?.version ?? null };
      const el = $("stage-status");
      el.textContent = against
        ? `v${mask.version} vs v${against.version}: +${diff.added.length} px added (green), -${diff.removed.length} px removed (magenta)`
        : `v${mask.version}: ${diff.added.length} px`;
      this.render();
    } catch (err) {
      this.#onError(err);
    }
  }

  stopCompare() {
    if (!this.comparing) return;
    this.#canvasView.setImageOverlay("diff", null);
    if (this.#savedVisibility) {
      for (const [k, v] of this.#savedVisibility) this.#canvasView.visible.set(k, v);
    }
    this.#savedVisibility = null;
    this.comparing = null;
    $("stage-status").textContent = "";
    this.#canvasView.requestDraw();
    this.render();
  }

  async #restore(mask) {
    const lose = this.#store.dirty ? " Your unsaved drawing is replaced by it." : "";
    if (!confirm(`Restore version ${mask.version} as a new version?${lose} The history keeps every version.`)) return;
    this.stopCompare();
    await this.#onRestore(mask);
  }
}
