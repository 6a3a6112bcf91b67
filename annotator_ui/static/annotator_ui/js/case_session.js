// The case editor's server adapter: loads a case into the mask store, saves corrections and
// acceptances on top of the base version, keeps the clinician's drawing through a 409 (the conflict
// is state here; the page only shows it), saves the report, restores old versions and asks for new
// proposals. DOM-free: the API client and the image codec are injected (the browser decodes PNGs
// with createImageBitmap, tests with plain arrays).

import { ApiError, ConflictError } from "./api.js";
import { paths } from "./endpoints.js";
import { Emitter } from "./events.js";
import { fromRGBA } from "./mask.js";
import { LAYERS } from "./store.js";

/** Accepting a case that has no report needs an explicit confirmation (the server records it). */
export class ReportMissingError extends ApiError {
  constructor(detail) {
    super(400, "report_missing", detail);
    this.name = "ReportMissingError";
  }
}

const asList = (page) => (Array.isArray(page) ? page : (page?.results ?? []));

export class CaseSession extends Emitter {
  /** The case as the API describes it (CaseDetailOut), kept current after every write. */
  caseData = null;
  /** Every mask version of the case, oldest first. */
  masks = [];
  /** {current, kept, message, retry} while the last write was refused as stale, else null. */
  conflict = null;

  #api;
  #store;
  #codec;
  #caseId;

  /**
   * @param {{api: import("./api.js").ApiClient, store: import("./store.js").MaskStore, caseId: number,
   *          codec: {pixels(url: string): Promise<{rgba: Uint8ClampedArray, width: number, height: number}>,
   *                  encodeMask(mask: Uint8Array, width: number, height: number): Promise<Blob>}}} deps
   */
  constructor({ api, store, codec, caseId }) {
    super();
    this.#api = api;
    this.#store = store;
    this.#codec = codec;
    this.#caseId = caseId;
  }

  get caseId() {
    return this.#caseId;
  }

  /** The newest mask version of `kind` ("proposal", "accepted", …), or of any kind in `kinds`. */
  latest(...kinds) {
    return this.masks.filter((m) => kinds.includes(m.kind)).sort((a, b) => b.version - a.version)[0] ?? null;
  }

  /** Proposals newest first. */
  proposals() {
    return this.masks.filter((m) => m.kind === "proposal").sort((a, b) => b.version - a.version);
  }

  /**
   * The proposal to compare the latest one with: the newest made from a different report (the one before the
   * sentence was edited), else the one before it; null with fewer than two proposals.
   */
  previousProposal() {
    const [latest, ...older] = this.proposals();
    if (!latest || !older.length) return null;
    return older.find((p) => (p.report_text ?? "") !== (latest.report_text ?? "")) ?? older[0];
  }

  version(v) {
    return this.masks.find((m) => m.version === v) ?? null;
  }

  /** Decode a mask version's PNG into a binary mask of the case's size (null for null). */
  async maskPixels(mv) {
    if (!mv) return null;
    const { width, height } = this.caseData;
    const { rgba, width: w, height: h } = await this.#codec.pixels(mv.png_url ?? paths.maskPng(mv.id));
    if (w !== width || h !== height) throw new Error(`mask v${mv.version} is ${w}×${h}, the scan ${width}×${height}`);
    return fromRGBA(rgba, width, height);
  }

  /** A proposal's probability map as uint8 values (p × 255), or null when it has none. */
  async probabilities(mv) {
    if (!mv || mv.probabilities_url === null) return null;
    const { width, height } = this.caseData;
    let decoded;
    try {
      decoded = await this.#codec.pixels(mv.probabilities_url ?? paths.maskProbabilities(mv.id));
    } catch {
      return null; // no map stored (404) or not decodable: the panel says so
    }
    if (decoded.width !== width || decoded.height !== height) return null;
    const out = new Uint8Array(width * height);
    for (let i = 0; i < out.length; i++) out[i] = decoded.rgba[i * 4];
    return out;
  }

  async #fetchMasks() {
    this.masks = asList(await this.#api.get(paths.masks(this.#caseId))).sort((a, b) => a.version - b.version);
    return this.masks;
  }

  /**
   * Load the case: its data, its versions and the layers (the head as the editable mask, the latest
   * and the previous proposal, the accepted mask, the pseudo-label when `pseudoUrl` is given).
   * With `keepEdit` the clinician's unsaved drawing stays; only the reference layers change.
   */
  async load({ keepEdit = false, pseudoUrl = null } = {}) {
    this.caseData = await this.#api.get(paths.case(this.#caseId));
    await this.#fetchMasks();
    const { width, height } = this.caseData;
    const latestProposal = this.proposals()[0];
    const previousProposal = this.previousProposal();
    const [edit, proposal, previous, accepted, pseudo] = await Promise.all([
      keepEdit ? null : this.maskPixels(this.caseData.head_mask ?? null),
      this.maskPixels(latestProposal ?? null),
      this.maskPixels(previousProposal ?? null),
      this.maskPixels(this.latest("accepted")),
      pseudoUrl ? this.#pseudo(pseudoUrl) : null,
    ]);
    const layers = {
      [LAYERS.PROPOSAL]: proposal,
      [LAYERS.PREVIOUS]: previous,
      [LAYERS.ACCEPTED]: accepted,
      [LAYERS.PSEUDO]: pseudo,
    };
    if (keepEdit && this.#store.width === width && this.#store.height === height) {
      for (const [name, mask] of Object.entries(layers)) this.#store.setReference(name, mask);
    } else {
      this.#store.load({ width, height, edit, baseVersion: this.caseData.head_version ?? null, layers });
    }
    this.emit("loaded", { keepEdit });
    return this.caseData;
  }

  async #pseudo(url) {
    try {
      const { rgba, width, height } = await this.#codec.pixels(url);
      if (width !== this.caseData.width || height !== this.caseData.height) return null;
      return fromRGBA(rgba, width, height, 128); // soft map p*255: the pseudo-label at 0.5
    } catch {
      return null;
    }
  }

  async #maskForm(extra = {}) {
    const { width, height } = this.#store;
    const form = new FormData();
    form.append("mask", await this.#codec.encodeMask(this.#store.layer(LAYERS.EDIT), width, height), "mask.png");
    if (this.#store.baseVersion != null) form.append("base_version", String(this.#store.baseVersion));
    for (const [k, v] of Object.entries(extra)) form.append(k, String(v));
    return form;
  }

  /** Run a write; a 409 becomes the session's conflict (drawing kept) and is rethrown. */
  async #write(op, retry) {
    try {
      const out = await op();
      this.conflict = null;
      this.emit("conflict", null);
      return out;
    } catch (err) {
      if (err instanceof ConflictError) {
        const d = typeof err.detail === "object" && err.detail !== null ? err.detail : { message: err.message };
        this.conflict = {
          current: d.current_version ?? null,
          kept: d.kept_version ?? null,
          message: d.message ?? err.message,
          retry,
        };
        this.emit("conflict", this.conflict);
      }
      if (err instanceof ApiError && err.code === "report_missing") throw new ReportMissingError(err.detail);
      throw err;
    }
  }

  #afterMaskSaved(mv, state) {
    this.#store.markSaved(mv.version);
    Object.assign(this.caseData, { head_version: mv.version, head_kind: mv.kind, head_mask: mv, state });
    if (mv.kind === "accepted") {
      this.caseData.assignee = null;
      this.#store.setReference(LAYERS.ACCEPTED, this.#store.layer(LAYERS.EDIT).slice());
    }
    this.masks = [...this.masks.filter((m) => m.version !== mv.version), mv];
    this.emit("saved", { mask: mv });
    return mv;
  }

  /** Save the editable mask as a correction on top of the base version. */
  saveMask() {
    const op = async () => {
      const mv = await this.#api.upload(paths.masks(this.#caseId), await this.#maskForm());
      return this.#afterMaskSaved(mv, "in_review");
    };
    return this.#write(op, () => this.saveMask());
  }

  /**
   * Accept the editable mask. Without a report the server answers `report_missing`
   * (ReportMissingError) unless `withoutReport` confirms it; the confirmation is recorded.
   */
  accept({ withoutReport = false } = {}) {
    const op = async () => {
      const form = await this.#maskForm(withoutReport ? { without_report: "true" } : {});
      const mv = await this.#api.upload(paths.accept(this.#caseId), form);
      return this.#afterMaskSaved(mv, "labeled");
    };
    return this.#write(op, () => this.accept({ withoutReport }));
  }

  /** Reject the model's proposal: the server moves the case back to unlabeled; reload to show it. */
  async reject(reason = "") {
    await this.#api.post(paths.reject(this.#caseId), { reason });
    return this.load();
  }

  /** Whether Reject applies: the head is a model proposal nobody has corrected or accepted. */
  get canReject() {
    const head = this.caseData?.head_mask;
    return !!head && head.kind === "proposal" && this.caseData.state === "proposed";
  }

  /**
   * Restore an old version as a new version on top of the head (the history keeps everything); the
   * editable mask becomes the restored one.
   */
  restore(mv) {
    const op = async () => {
      const body = { base_version: this.#store.baseVersion };
      const restored = await this.#api.post(paths.maskRestore(mv.id), body);
      const pixels = await this.maskPixels(restored);
      this.#store.load({
        width: this.#store.width,
        height: this.#store.height,
        edit: pixels,
        baseVersion: restored.version,
        layers: Object.fromEntries(
          this.#store.layerNames().filter((n) => n !== LAYERS.EDIT).map((n) => [n, this.#store.layer(n)]),
        ),
      });
      this.caseData = await this.#api.get(paths.case(this.#caseId));
      await this.#fetchMasks();
      this.emit("saved", { mask: restored, restored: mv });
      return restored;
    };
    return this.#write(op, () => this.restore(mv));
  }

  /** After a conflict: the clinician has seen their version; save ours on top of it. */
  overwrite() {
    if (!this.conflict) return null;
    const { current, retry } = this.conflict;
    this.#store.baseVersion = current;
    this.conflict = null;
    this.emit("conflict", null);
    return retry();
  }

  /** The version that won the race, as a mask (for the "their version" layer). */
  async theirs() {
    if (this.conflict?.current == null) return null;
    await this.#fetchMasks();
    return this.maskPixels(this.version(this.conflict.current));
  }

  /**
   * Save the report (structured fields) unless the stored one already reads the same.
   * @returns {Promise<boolean>} whether a new report version was written
   */
  async saveReport(rendered) {
    if (this.caseData.report === rendered.text) return false;
    const body = { fields: rendered.fields };
    if (this.caseData.report_version != null) body.base_version = this.caseData.report_version;
    const report = await this.#api.put(paths.report(this.#caseId), body);
    Object.assign(this.caseData, { report: report.text, report_version: report.version, report_fields: report.fields });
    this.emit("report", report);
    return true;
  }

  /** Queue a new proposal with the active model and the current report; answers the job. */
  propose() {
    return this.#api.post(paths.propose(this.#caseId), {});
  }
}
