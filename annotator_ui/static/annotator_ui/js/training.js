// Training form and model versions, DOM-free: the server's time estimate for the chosen image size and epochs,
// the training phases in words, best vs last validation Dice, each version's settings and validation set, the
// promotion decision and the confirmation an admin reads before promoting by hand.
//
// Inputs are the server's JSON: training-readiness ({ready, accepted, ..., defaults?: {img_size, epochs, device},
// estimate?: {seconds, seconds_per_image_epoch, device, img_size, images, epochs, basis}}), the job snapshot
// ({status, progress: {phase, epoch, epochs, ...}, queue_position?, device?}) and model versions
// ({number, status, settings, validation_set, metrics, promotion}).

import { formatDuration } from "./jobs.js";

export const IMG_SIZES = Object.freeze([112, 160, 224, 256, 320]);
export const MODES = Object.freeze({
  semi_supervised: "Semi-supervised (+ unlabeled, EPI)",
  labeled_only: "Accepted cases only",
});

const num = (v) => typeof v === "number" && Number.isFinite(v);
const fixed = (v, digits = 3) => (num(v) ? v.toFixed(digits) : "–");

/** The form's starting values: the server's device-dependent defaults when it sends them, else `fallback`. */
export function formDefaults(readiness, fallback = { img_size: 224, epochs: 5, mode: "semi_supervised" }) {
  const d = readiness?.defaults ?? {};
  return {
    img_size: num(d.img_size) ? d.img_size : fallback.img_size,
    epochs: num(d.epochs) ? d.epochs : fallback.epochs,
    mode: d.mode in MODES ? d.mode : fallback.mode,
    device: typeof d.device === "string" ? d.device : null,
  };
}

/**
 * Seconds the round should take with the form's image size and epochs, from the server's estimate: its measured
 * seconds per image and epoch, scaled by the pixel count (image size squared) when the size differs; `null`
 * without an estimate.
 */
export function estimateSeconds(estimate, { img_size, epochs, images } = {}) {
  if (!estimate) return null;
  const size = num(img_size) && img_size > 0 ? img_size : estimate.img_size;
  const n = num(images) ? images : estimate.images;
  const e = num(epochs) && epochs > 0 ? epochs : estimate.epochs;
  const scale = num(estimate.img_size) && estimate.img_size > 0 && num(size) ? (size / estimate.img_size) ** 2 : 1;
  if (num(estimate.seconds_per_image_epoch) && num(n) && num(e)) return estimate.seconds_per_image_epoch * scale * n * e;
  if (num(estimate.seconds) && num(e) && num(estimate.epochs) && estimate.epochs > 0) {
    return (estimate.seconds * scale * e) / estimate.epochs;
  }
  return num(estimate.seconds) ? estimate.seconds * scale : null;
}

/** "About 3 min 20 s on cpu (…)" for the form; "" without an estimate. */
export function estimateText(estimate, form = {}) {
  const s = estimateSeconds(estimate, form);
  if (s == null) return "";
  const device = estimate.device ? ` on ${estimate.device}` : "";
  const size = form.img_size ?? estimate.img_size;
  const epochs = form.epochs ?? estimate.epochs;
  const parts = [];
  if (num(estimate.images)) parts.push(`${estimate.images} images × ${epochs} epochs at ${size} px`);
  if (num(estimate.seconds_per_image_epoch)) {
    parts.push(`${estimate.seconds_per_image_epoch.toFixed(2)} s per image and epoch at ${estimate.img_size} px`);
  }
  if (estimate.basis) parts.push(String(estimate.basis));
  return `Estimated time: about ${formatDuration(s) || "0 s"}${device}${parts.length ? ` (${parts.join("; ")})` : ""}.`;
}

const PHASES = {
  prepare: "Preparing the data: copying the accepted cases and their masks",
  pseudo_labels: "Updating the pseudo-labels of the unlabeled cases (EPI)",
  evaluate: "Scoring the new model on the validation set (and the test cases)",
  store: "Storing the new model version",
};

/** What a training job is doing, in words. */
export function phaseText(job) {
  if (!job) return "";
  const p = job.progress ?? {};
  const device = job.device ?? p.device;
  if (job.status === "pending") {
    const on = device ? ` on a ${String(device).toUpperCase()} worker` : "";
    if (num(job.queue_position)) {
      const ahead = job.queue_position;
      return ahead > 0
        ? `Queued: ${ahead} job${ahead === 1 ? "" : "s"} ahead; it will run${on}.`
        : `Queued: next in line; it will run${on}.`;
    }
    return `Queued; waiting for a worker${on}.`;
  }
  if (job.status === "succeeded") return "Finished.";
  if (job.status === "failed") return `Failed${job.message ? `: ${job.message}` : "."}`;
  if (job.status === "cancelled") return "Cancelled.";
  if (p.phase === "train") {
    if (!p.epochs) return "Training is starting.";
    const epoch = Math.max(1, p.epoch ?? 0);
    return `Training: epoch ${epoch} of ${p.epochs}${p.steps ? `, step ${p.step ?? 0} of ${p.steps}` : ""}.`;
  }
  if (PHASES[p.phase]) return `${PHASES[p.phase]}.`;
  return "Starting.";
}

/** Best vs last validation Dice of a version (or a finished job's progress), labelled. */
export function diceLabels(metrics) {
  if (!metrics) return [];
  const out = [];
  const best = num(metrics.val_dice_best) ? metrics.val_dice_best : metrics.val_dice;
  if (num(best)) {
    const epoch = num(metrics.best_epoch) ? ` (epoch ${metrics.best_epoch}, the checkpoint kept)` : "";
    out.push({ key: "best", label: `Best validation Dice${epoch}`, value: best });
  }
  if (num(metrics.val_dice_last)) {
    const epoch = num(metrics.last_epoch) ? ` (epoch ${metrics.last_epoch})` : "";
    out.push({ key: "last", label: `Last epoch's validation Dice${epoch}`, value: metrics.val_dice_last });
  }
  return out;
}

/** "224 px · semi-supervised · fine-tuned · 5 of 5 epochs · text 10 tokens · seed 0". */
export function settingsText(model) {
  const s = model?.settings ?? {};
  const parts = [];
  if (num(s.img_size)) parts.push(`${s.img_size} px`);
  if (s.mode) parts.push(s.mode === "semi_supervised" ? "semi-supervised" : s.mode === "labeled_only" ? "accepted only" : s.mode);
  if (s.init) parts.push(s.init === "finetune" ? "fine-tuned" : s.init === "scratch" ? "from scratch" : s.init);
  if (num(s.epochs_run) && num(s.epochs)) parts.push(`${s.epochs_run} of ${s.epochs} epochs`);
  else if (num(s.epochs)) parts.push(`${s.epochs} epochs`);
  if (num(s.text_len)) parts.push(`text ${s.text_len} tokens`);
  if (num(s.seed)) parts.push(`seed ${s.seed}`);
  return parts.join(" · ");
}

/** "v2 · 5 cases (val split)"; "" when the version was not scored on a fixed set. */
export function validationSetText(model) {
  const vs = model?.validation_set;
  if (!vs) return model?.metrics?.val_source === "train" ? "its own training cases" : "";
  const source = vs.source === "seeded" ? `seeded pick${num(vs.seed) ? `, seed ${vs.seed}` : ""}` : `${vs.source} split`;
  return `v${vs.version} · ${vs.n} case${vs.n === 1 ? "" : "s"} (${source})`;
}

/** The promotion decision in words: the round's reason, and who promoted it by hand. */
export function promotionText(model) {
  const p = model?.promotion ?? {};
  const parts = [];
  if (p.reason) parts.push(p.reason);
  if (p.by_hand?.user) parts.push(`promoted by hand by ${p.by_hand.user}`);
  return parts.join("; ");
}

/** The active model's validation Dice on the candidate's cases: measured in the candidate's round when it was. */
export function activeDiceOnSameCases(model, active) {
  const baseline = model?.metrics?.baseline;
  if (active && baseline && baseline.model_version === active.id && num(baseline.dice)) return baseline.dice;
  return null;
}

/** The text of the confirmation before promoting (or rolling back to) a version by hand, with its numbers. */
export function confirmText(model, active, { rollback = false } = {}) {
  const m = model?.metrics ?? {};
  const lines = [`${rollback ? "Roll back to" : "Promote"} model v${model.number}? New proposals will use it.`];
  const vs = validationSetText(model);
  lines.push(`Validation Dice ${fixed(m.val_dice)}${vs ? ` on validation set ${vs}` : ""}.`);
  if (num(m.empty_baseline_dice)) lines.push(`An empty mask scores ${fixed(m.empty_baseline_dice)} on the same cases.`);
  if (num(m.n_val_lesion) && m.n_val_lesion > 0) {
    lines.push(`Empty prediction on ${m.n_val_empty_on_lesion ?? 0} of ${m.n_val_lesion} validation cases with a lesion.`);
  }
  if (active) {
    const same = activeDiceOnSameCases(model, active);
    lines.push(
      same != null
        ? `Active model v${active.number}: ${fixed(same)} on the same cases.`
        : `Active model v${active.number}: ${fixed(active.metrics?.val_dice)}${
            active.validation_set ? ` on validation set v${active.validation_set.version}` : ""
          } (measured in its own round).`,
    );
  }
  if (num(m.test_dice)) lines.push(`Test Dice ${fixed(m.test_dice)} (${m.n_test ?? "?"} cases).`);
  const reason = model?.promotion?.reason;
  if (reason) lines.push(`Automatic decision: ${reason}.`);
  return lines.join("\n");
}

/** Effort saved on the cases whose proposal a version made (metrics endpoint's `effort`), in words. */
export function effortText(effort) {
  if (!effort || !effort.n_from_proposal) return "";
  const parts = [`${effort.n_from_proposal} accepted`];
  if (num(effort.fraction_unchanged)) parts.push(`${Math.round(effort.fraction_unchanged * 100)}% unchanged`);
  if (num(effort.mean_dice)) parts.push(`proposal vs accepted Dice ${effort.mean_dice.toFixed(2)}`);
  if (num(effort.median_seconds_to_accept)) parts.push(`median ${formatDuration(effort.median_seconds_to_accept)} to accept`);
  return parts.join(" · ");
}

/** Best and last validation Dice of a running or finished training job, from its progress (for diceLabels). */
export function progressDice(job) {
  const history = (job?.progress?.history ?? []).filter((h) => num(h.val_dice) && num(h.epoch));
  if (!history.length) return null;
  const best = history.reduce((a, b) => (b.val_dice > a.val_dice ? b : a));
  const last = history.at(-1);
  return { val_dice_best: best.val_dice, best_epoch: best.epoch, val_dice_last: last.val_dice, last_epoch: last.epoch };
}
