// Jobs & models page: start retraining (admins) with image size, epochs and mode and the server's time estimate,
// live progress over /ws/jobs/{id}/ (phases in words, per-epoch loss and Dice curves, best vs last validation
// Dice), model versions with their settings, validation set, metrics, promotion decision and effort saved;
// promote (with a confirmation showing the numbers) and roll back.

import { api, badge, fmtDate, fmtNumber, h, pageConfig, toast } from "../dom.js";
import { paths } from "../endpoints.js";
import { watchJob } from "../job_watch.js";
import { curves, extent, isFinished, linePath, progressFraction, summary, waitingText } from "../jobs.js";
import {
  IMG_SIZES,
  MODES,
  confirmText,
  diceLabels,
  effortText,
  estimateText,
  formDefaults,
  phaseText,
  progressDice,
  promotionText,
  settingsText,
  validationSetText,
} from "../training.js";

const config = pageConfig();
const projectId = config.project.id;
const isAdmin = config.project.role === "admin";
const $ = (id) => document.getElementById(id);

let watched = null; // {id, stop} of the training job shown

// --- model versions -------------------------------------------------------------------------------------

let readiness = null;

async function loadEffort() {
  try {
    const body = await api.get(`${paths.metrics(projectId)}?format=json`);
    return new Map((body.models ?? []).map((row) => [row.id, row.effort]));
  } catch {
    return new Map();
  }
}

const COLUMNS = [
  "Version",
  "Status",
  "Settings",
  "Validation set",
  "Val Dice (best epoch)",
  "Last-epoch val Dice",
  "Test Dice",
  "Promotion",
  "Effort saved",
  "Created",
];

async function loadModels() {
  const [list, effort] = await Promise.all([api.list(paths.models(projectId)), loadEffort()]);
  const models = list.sort((a, b) => b.number - a.number);
  const active = models.find((m) => m.status === "active");
  $("models-head").replaceChildren(
    h(
      "tr",
      {},
      COLUMNS.map((c) => h("th", { scope: "col", class: c.includes("Dice") ? "num" : "" }, c)),
      isAdmin ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")) : null,
    ),
  );
  if (!models.length) {
    $("models-rows").replaceChildren(
      h("tr", {}, h("td", { colspan: COLUMNS.length + 1, class: "muted" }, "No model versions yet. Accept cases, then start retraining.")),
    );
    return;
  }
  $("models-rows").replaceChildren(
    ...models.map((m) => {
      let action = null;
      if (isAdmin && m.status !== "active") {
        const older = active && m.number < active.number;
        action = h(
          "button",
          { type: "button", "data-model": m.id, onclick: () => activate(m, active, older) },
          older ? "Roll back to this" : "Promote",
        );
      }
      const [best, last] = [diceLabels(m.metrics).find((d) => d.key === "best"), diceLabels(m.metrics).find((d) => d.key === "last")];
      return h(
        "tr",
        { class: m.status === "active" ? "active-model" : "", "data-number": m.number },
        h("td", {}, h("strong", {}, `v${m.number}`), m.name && m.name !== `v${m.number}` ? ` ${m.name}` : ""),
        h("td", {}, badge(m.status)),
        h("td", { class: "settings" }, settingsText(m)),
        h("td", { class: "validation-set" }, validationSetText(m)),
        h("td", { class: "num", title: best?.label ?? "" }, best ? `${fmtNumber(best.value)}${m.metrics?.best_epoch ? ` (ep ${m.metrics.best_epoch})` : ""}` : "–"),
        h("td", { class: "num", title: last?.label ?? "" }, last ? fmtNumber(last.value) : "–"),
        h("td", { class: "num" }, fmtNumber(m.metrics?.test_dice)),
        h("td", { class: "promotion small" }, promotionText(m)),
        h("td", { class: "effort small" }, effortText(effort.get(m.id))),
        h("td", {}, fmtDate(m.created_at)),
        isAdmin ? h("td", {}, action) : null,
      );
    }),
  );
}

async function activate(model, active, rollback) {
  if (!confirm(confirmText(model, active, { rollback }))) return;
  try {
    await api.post(paths.activate(model.id), {});
    toast(`Model v${model.number} is now active.`);
    await Promise.all([loadModels(), loadJobs()]);
  } catch (err) {
    toast(err.message, { error: true });
  }
}

// --- jobs -----------------------------------------------------------------------------------------

async function loadJobs() {
  const jobs = await api.list(paths.projectJobs(projectId), { max: 50 });
  $("jobs-rows").replaceChildren(
    ...(jobs.length
      ? jobs.slice(0, 15).map((j) =>
          h(
            "tr",
            { "data-job": j.id },
            h("td", {}, `#${j.id}`),
            h("td", {}, j.kind.replaceAll("_", " ")),
            h("td", {}, badge(j.status)),
            h("td", {}, summary(j) || j.message || waitingText(j)),
            h("td", {}, fmtDate(j.created_at)),
          ),
        )
      : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs yet."))]),
  );
  return jobs;
}

function renderJob(job) {
  $("job").hidden = false;
  $("job-title").textContent = `Training job #${job.id}`;
  const status = $("job-status");
  status.className = `badge ${job.status}`;
  status.textContent = job.status;
  const pct = Math.round(progressFraction(job) * 100);
  $("job-bar").style.width = `${pct}%`;
  $("job-progress").setAttribute("aria-valuenow", String(pct));
  $("job-progress").setAttribute("aria-valuetext", `${pct}%`);
  $("job-phase").textContent = phaseText(job);
  $("job-summary").textContent = summary(job) || waitingText(job);
  const bestLast = diceLabels(progressDice(job));
  $("job-dice").replaceChildren(...bestLast.flatMap((d) => [h("dt", {}, d.label), h("dd", { "data-dice": d.key }, fmtNumber(d.value))]));
  const start = $("train-start");
  if (start && !isFinished(job)) start.disabled = true;
  const row = document.querySelector(`#jobs-rows tr[data-job="${job.id}"]`);
  if (row) {
    row.cells[2].replaceChildren(badge(job.status));
    row.cells[3].textContent = summary(job) || job.message || waitingText(job);
  }
  $("job-message").textContent = job.message || resultText(job);
  const cancel = $("job-cancel");
  if (cancel) cancel.hidden = isFinished(job);
  const { loss, dice } = curves(job);
  drawChart($("chart-loss"), loss, { label: "loss" });
  drawChart($("chart-dice"), dice, { label: "dice", yDomain: [0, 1] });
}

/** What a finished training round did, from its result: the new version and whether it was promoted. */
function resultText(job) {
  const r = job.result ?? {};
  if (job.status !== "succeeded" || r.number == null) return "";
  const dice = typeof r.metrics?.val_dice === "number" ? ` (val Dice ${r.metrics.val_dice.toFixed(3)})` : "";
  return r.promoted
    ? `Model v${r.number}${dice} is now active (${r.reason}).`
    : `Model v${r.number}${dice} stays a candidate (${r.reason}). An admin can promote it below.`;
}

/** A small line chart sized to its box: axes, line, dots, min/max and first/last epoch labels. */
function drawChart(svg, points, { label, yDomain }) {
  const W = Math.max(200, Math.round(svg.clientWidth || 320));
  const H = 140;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const pad = 30;
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  svg.replaceChildren();
  svg.append(el("line", { class: "axis", x1: pad, y1: H - pad, x2: W - 6, y2: H - pad }));
  svg.append(el("line", { class: "axis", x1: pad, y1: 6, x2: pad, y2: H - pad }));
  if (!points.length) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no epochs yet"));
    return;
  }
  const xs = extent(points.map((p) => p[0]));
  const ys = yDomain ?? extent(points.map((p) => p[1]));
  const box = { width: W - pad - 6, height: H - pad - 6, pad: 6 };
  const g = el("g", { transform: `translate(${pad},6)` });
  g.append(el("path", { class: `line ${label}`, d: linePath(points, { ...box, xDomain: xs, yDomain: ys }) }));
  for (const p of points) {
    const d = linePath([p], { ...box, xDomain: xs, yDomain: ys });
    const [cx, cy] = d.slice(1).split(",").map(Number);
    g.append(el("circle", { class: `dot ${label}`, cx, cy, r: 2.5 }, undefined));
  }
  svg.append(g);
  svg.append(el("text", { x: 2, y: 12 }, fmtNumber(ys[1], 2)));
  svg.append(el("text", { x: 2, y: H - pad }, fmtNumber(ys[0], 2)));
  svg.append(el("text", { x: pad, y: H - 6 }, `epoch ${points[0][0]}`));
  if (points.length > 1) svg.append(el("text", { x: W - 6, y: H - 6, "text-anchor": "end" }, `epoch ${points.at(-1)[0]}`));
  svg.setAttribute("data-points", String(points.length));
}

/** Show a training job and follow it live; when it finishes, refresh the model versions and the job list. */
function watch(job) {
  unwatch();
  const box = $("job");
  box.dataset.socketMessages = "0";
  const alreadyFinished = isFinished(job);
  const current = watchJob(api, job, (j, via) => {
    if (via === "socket") box.dataset.socketMessages = String(Number(box.dataset.socketMessages) + 1);
    renderJob(j);
  });
  watched = { id: job.id, stop: current.stop };
  current.done.then(async (j) => {
    if (watched?.id !== j.id) return;
    watched = null;
    if (alreadyFinished) return;
    toast(j.status === "succeeded" ? "Training finished." : `Training ${j.status}.`, { error: j.status === "failed" });
    await Promise.all([loadModels(), loadJobs(), loadReadiness()]);
  });
}

function unwatch() {
  watched?.stop();
  watched = null;
}

$("train-form")?.addEventListener("submit", async (e) => {
  e.preventDefault();
  const button = $("train-start");
  button.disabled = true;
  try {
    const job = await api.post(paths.trainingJobs(projectId), formValues());
    toast(`Training job #${job.id} started.`);
    watch(job);
    loadJobs();
  } catch (err) {
    toast(err.message, { error: true, ms: 8000 });
  } finally {
    button.disabled = false;
  }
});

$("job-cancel")?.addEventListener("click", async () => {
  if (!watched) return;
  try {
    const j = await api.post(paths.jobCancel(watched.id), {});
    renderJob(j);
  } catch (err) {
    toast(err.message, { error: true });
  }
});

function formValues() {
  return {
    img_size: Number($("train-img-size").value),
    epochs: Number($("train-epochs").value),
    mode: $("train-mode").value,
  };
}

/** The form's choices (sizes, modes) and the server's defaults, once. */
function fillForm(r) {
  const sizeSelect = $("train-img-size");
  if (!sizeSelect || sizeSelect.options.length) return;
  const d = formDefaults(r);
  const sizes = IMG_SIZES.includes(d.img_size) ? IMG_SIZES : [...IMG_SIZES, d.img_size].sort((a, b) => a - b);
  sizeSelect.replaceChildren(...sizes.map((s) => h("option", { value: s }, `${s} px${s === d.img_size ? " (default)" : ""}`)));
  sizeSelect.value = String(d.img_size);
  $("train-mode").replaceChildren(...Object.entries(MODES).map(([v, label]) => h("option", { value: v }, label)));
  $("train-mode").value = d.mode;
  $("train-epochs").value = String(d.epochs);
}

/** The server's time estimate for the form's image size and epochs. */
function renderEstimate() {
  const out = $("train-estimate");
  if (!out) return;
  out.textContent = readiness?.estimate
    ? estimateText(readiness.estimate, formValues())
    : "No time estimate from the server for this project yet.";
}

for (const id of ["train-img-size", "train-epochs", "train-mode"]) $(id)?.addEventListener("input", renderEstimate);

/** How many accepted cases there are, and how many the first model still needs. */
async function loadReadiness() {
  try {
    const r = await api.get(paths.readiness(projectId));
    readiness = r;
    fillForm(r);
    renderEstimate();
    const accepted = `${r.accepted} accepted training case${r.accepted === 1 ? "" : "s"}`;
    $("readiness").textContent = r.ready
      ? `${accepted}. Ready to train${r.has_active_model ? " (fine-tunes the active model)" : " the first model"}.`
      : `${accepted}; the first model needs ${r.needed} (${r.missing} more to accept).`;
    const start = $("train-start");
    if (start) start.disabled = !r.ready || watched !== null; // one training round at a time
  } catch {
    fillForm(null);
    renderEstimate();
    $("readiness").textContent = "";
  }
}

async function init() {
  loadReadiness();
  try {
    const [jobs] = await Promise.all([loadJobs(), loadModels()]);
    const live = jobs.find((j) => j.kind === "training" && !isFinished(j)) ?? jobs.find((j) => j.kind === "training");
    if (live) watch(live);
  } catch (err) {
    toast(err.message, { error: true });
  }
}

init();
