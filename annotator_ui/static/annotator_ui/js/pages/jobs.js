// Jobs & models page: start retraining (admins), live progress over /ws/jobs/{id}/ with per-epoch loss and
// Dice curves, model versions with their metrics side by side, promote and roll back.

import { api, badge, fmtDate, fmtNumber, h, pageConfig, toast } from "../dom.js";
import { paths } from "../endpoints.js";
import { watchJob } from "../job_watch.js";
import { curves, extent, isFinished, linePath, progressFraction, summary, waitingText } from "../jobs.js";

const config = pageConfig();
const projectId = config.project.id;
const isAdmin = config.project.role === "admin";
const $ = (id) => document.getElementById(id);

let watched = null; // {id, stop} of the training job shown

// --- model versions -------------------------------------------------------------------------------

const PREFERRED_METRICS = ["dice", "val_dice", "iou", "val_iou", "hd95", "precision", "recall", "loss", "val_loss"];

function metricColumns(models) {
  const keys = new Set();
  for (const m of models) for (const [k, v] of Object.entries(m.metrics ?? {})) if (typeof v === "number") keys.add(k);
  return [...keys].sort((a, b) => {
    const ia = PREFERRED_METRICS.indexOf(a);
    const ib = PREFERRED_METRICS.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
}

async function loadModels() {
  const models = (await api.list(paths.models(projectId))).sort((a, b) => b.number - a.number);
  const cols = metricColumns(models);
  const active = models.find((m) => m.status === "active");
  $("models-head").replaceChildren(
    h(
      "tr",
      {},
      h("th", { scope: "col" }, "Version"),
      h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Created"),
      cols.map((c) => h("th", { scope: "col", class: "num" }, c.replaceAll("_", " "))),
      isAdmin ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")) : null,
    ),
  );
  if (!models.length) {
    $("models-rows").replaceChildren(
      h("tr", {}, h("td", { colspan: 4 + cols.length, class: "muted" }, "No model versions yet. Accept cases, then start retraining.")),
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
          { type: "button", "data-model": m.id, onclick: () => activate(m, older) },
          older ? "Roll back to this" : "Promote",
        );
      }
      return h(
        "tr",
        { class: m.status === "active" ? "active-model" : "", "data-number": m.number },
        h("td", {}, h("strong", {}, `v${m.number}`), m.name && m.name !== `v${m.number}` ? ` ${m.name}` : ""),
        h("td", {}, badge(m.status)),
        h("td", {}, fmtDate(m.created_at)),
        cols.map((c) => h("td", { class: "num" }, fmtNumber(m.metrics?.[c]))),
        isAdmin ? h("td", {}, action) : null,
      );
    }),
  );
}

async function activate(model, rollback) {
  const verb = rollback ? "Roll back to" : "Promote";
  if (!confirm(`${verb} model v${model.number}? New proposals will use it.`)) return;
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
  $("job-summary").textContent = summary(job) || waitingText(job);
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
    ? `Model v${r.number}${dice} is now active: ${r.reason}.`
    : `Model v${r.number}${dice} stored as a candidate: ${r.reason}. Promote it below if you want it.`;
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
    const job = await api.post(paths.trainingJobs(projectId), {
      epochs: Number($("train-epochs").value),
      mode: $("train-semi").checked ? "semi_supervised" : "labeled_only",
    });
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

/** How many accepted cases there are, and how many the first model still needs. */
async function loadReadiness() {
  try {
    const r = await api.get(paths.readiness(projectId));
    const accepted = `${r.accepted} accepted training case${r.accepted === 1 ? "" : "s"}`;
    $("readiness").textContent = r.ready
      ? `${accepted}. Ready to train${r.has_active_model ? " (fine-tunes the active model)" : " the first model"}.`
      : `${accepted}; the first model needs ${r.needed} (${r.missing} more to accept).`;
    const start = $("train-start");
    if (start) start.disabled = !r.ready || watched !== null; // one training round at a time
  } catch {
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
