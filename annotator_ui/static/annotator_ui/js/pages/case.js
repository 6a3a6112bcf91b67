// Case editor: wires the DOM-free store, undo stack, input machine and view transform to the canvas view,
// the toolbar, the report form and the server. Saves carry the base version; a 409 keeps the drawing.

import { ConflictError, formatDetail } from "../api.js";
import { CanvasView, LAYER_STYLES } from "../canvas_view.js";
import { api, badge, h, isTyping, loadPixels, maskToPng, pageConfig, toast } from "../dom.js";
import { paths, socketUrl } from "../endpoints.js";
import { ViewTransform } from "../geometry.js";
import { InputMachine } from "../input.js";
import { watchJob } from "../job_watch.js";
import { summary } from "../jobs.js";
import { sourceLabel } from "../pacs.js";
import { fromRGBA } from "../mask.js";
import { relevantFields, renderReport } from "../report.js";
import { LAYERS, MaskStore } from "../store.js";
import { UndoStack } from "../undo.js";
import { applyWindow, CT_PRESETS, greyToRGBA, rgbaToGrey } from "../windowing.js";

const config = pageConfig();
const projectId = config.project.id;
const caseId = config.case.id;
const template = config.report_template;
const $ = (id) => document.getElementById(id);

const store = new MaskStore();
const undo = new UndoStack(store);
const view = new ViewTransform({ minScale: 0.05, maxScale: 40 });
let grey = null; // grey levels of the scan, for image-guided flood fill
const input = new InputMachine({ store, undo, view, image: () => grey });
const canvasView = new CanvasView({ canvas: $("canvas"), store, input, view });

let caseData = null;
let scanRGBA = null;
let hu = null; // {width, height, values} for DICOM cases
let conflict = null; // {detail, retry}
let busy = false;

// --- loading --------------------------------------------------------------------------------------

async function maskPixels(mask, width, height) {
  if (!mask) return null;
  const { rgba, width: w, height: hh } = await loadPixels(mask.png_url);
  if (w !== width || hh !== height) throw new Error(`mask v${mask.version} is ${w}×${hh}, the scan ${width}×${height}`);
  return fromRGBA(rgba, width, height);
}

function latest(masks, kind) {
  return masks.filter((m) => m.kind === kind).sort((a, b) => b.version - a.version)[0] ?? null;
}

async function loadCase({ keepView = false } = {}) {
  setStatus("Loading case…");
  caseData = await api.get(paths.case(caseId));
  const { width, height } = caseData;
  const [scan, masks] = await Promise.all([loadPixels(caseData.image_url), api.get(paths.masks(caseId))]);
  const maskList = Array.isArray(masks) ? masks : (masks.results ?? []);
  scanRGBA = scan.rgba;
  grey = rgbaToGrey(scan.rgba);
  const head = caseData.head_mask ?? null;
  const proposal = latest(maskList, "proposal");
  const accepted = latest(maskList, "accepted");
  const [edit, proposalMask, acceptedMask, pseudoMask] = await Promise.all([
    maskPixels(head, width, height),
    maskPixels(proposal, width, height),
    maskPixels(accepted, width, height),
    loadPseudo(width, height),
  ]);
  store.load({
    width,
    height,
    edit,
    baseVersion: caseData.head_version ?? null,
    layers: { [LAYERS.PROPOSAL]: proposalMask, [LAYERS.ACCEPTED]: acceptedMask, [LAYERS.PSEUDO]: pseudoMask },
  });
  showScan();
  if (!keepView) canvasView.fit();
  renderCaseInfo();
  renderLayers();
  if (!keepView || !reportTouched) fillReportForm(caseData.report_fields ?? {}); // keep what is being typed
  setStatus("");
  if (config.case.dicom && !hu) loadHU();
}

async function loadPseudo(width, height) {
  if (!config.case.has_pseudo) return null;
  try {
    const { rgba, width: w, height: hh } = await loadPixels(paths.pseudoPng(caseId));
    if (w !== width || hh !== height) return null;
    return fromRGBA(rgba, width, height, 128); // soft map p*255: threshold at 0.5
  } catch {
    return null; // no pseudo-label for this case
  }
}

function setStatus(text) {
  $("stage-status").textContent = text;
}

function renderCaseInfo() {
  $("case-name").textContent = caseData.name;
  $("case-state").replaceWith(Object.assign(badge(caseData.state), { id: "case-state" }));
  const parts = [`${caseData.width}×${caseData.height}`, caseData.split, caseData.original_format?.toUpperCase()];
  if (caseData.head_version) parts.push(`mask v${caseData.head_version} (${caseData.head_kind})`);
  else parts.push("no mask yet");
  if (caseData.assignee) parts.push(`held by ${caseData.assignee}`);
  parts.push(sourceLabel(caseData.source));
  $("case-meta").textContent = parts.filter(Boolean).join(" · ");
}

function renderLayers() {
  const names = [LAYERS.EDIT, LAYERS.PROPOSAL, LAYERS.PSEUDO, LAYERS.ACCEPTED, "theirs"].filter((n) => store.has(n));
  $("layers").replaceChildren(
    ...names.map((name) => {
      const style = LAYER_STYLES[name];
      const id = `layer-${name}`;
      const box = h("input", {
        type: "checkbox",
        id,
        checked: !!canvasView.visible.get(name),
        onchange: (e) => canvasView.setVisible(name, e.target.checked),
      });
      return h(
        "li",
        {},
        box,
        h("span", { class: "swatch", style: `background: rgb(${style.color.join(",")})`, "aria-hidden": "true" }),
        h("label", { for: id }, style.label),
      );
    }),
  );
}

// --- report form ----------------------------------------------------------------------------------

function buildReportForm() {
  const form = $("report-form");
  form.replaceChildren(
    ...template.fields.map((f) => {
      const id = `f-${f.name}`;
      const label = f.label ?? f.name.replaceAll("_", " ");
      if (f.type === "enum" || f.type === "multi") {
        const type = f.type === "enum" ? "radio" : "checkbox";
        return h(
          "fieldset",
          { "data-field": f.name },
          h("legend", {}, label, f.required ? " *" : ""),
          h(
            "div",
            { class: "choices" },
            f.choices.map((c) =>
              h("label", {}, h("input", { type, name: f.name, value: c.value }), c.text ?? c.value),
            ),
          ),
        );
      }
      if (f.type === "integer") {
        return h(
          "fieldset",
          { "data-field": f.name },
          h("legend", {}, h("label", { for: id }, label)),
          h("input", { type: "number", id, name: f.name, min: f.min, max: f.max, step: 1 }),
        );
      }
      return h(
        "fieldset",
        { "data-field": f.name },
        h("legend", {}, h("label", { for: id }, label)),
        h("textarea", { id, name: f.name, maxlength: f.max_length ?? 4000 }),
      );
    }),
  );
  const touched = () => {
    reportTouched = true;
    updateSentence();
  };
  form.addEventListener("input", touched);
  form.addEventListener("change", touched);
  form.addEventListener("submit", (e) => e.preventDefault());
}

function readFields() {
  const form = $("report-form");
  const out = {};
  for (const f of template.fields) {
    if (f.type === "enum") out[f.name] = form.querySelector(`input[name="${f.name}"]:checked`)?.value ?? null;
    else if (f.type === "multi") out[f.name] = [...form.querySelectorAll(`input[name="${f.name}"]:checked`)].map((i) => i.value);
    else out[f.name] = form.elements[f.name].value;
  }
  return out;
}

function fillReportForm(fields) {
  const form = $("report-form");
  for (const f of template.fields) {
    const v = fields[f.name];
    if (f.type === "enum" || f.type === "multi") {
      const chosen = new Set(Array.isArray(v) ? v : v ? [v] : []);
      for (const box of form.querySelectorAll(`input[name="${f.name}"]`)) box.checked = chosen.has(box.value);
    } else {
      form.elements[f.name].value = v ?? "";
    }
  }
  if (!Object.keys(fields).length && caseData?.report && template.fields.length === 1 && template.fields[0].type === "text") {
    form.elements[template.fields[0].name].value = caseData.report;
  }
  updateSentence();
}

let sentence = null; // {fields, text} when the form is valid
let reportTouched = false; // validation messages wait until the clinician edits the report or saves
function updateSentence() {
  const fields = readFields();
  const relevant = relevantFields(template, fields);
  for (const fs of $("report-form").querySelectorAll("fieldset")) fs.disabled = !relevant.has(fs.dataset.field);
  try {
    sentence = renderReport(template, fields);
    $("report-sentence").textContent = sentence.text;
    $("report-error").textContent = "";
  } catch (err) {
    sentence = null;
    // A stored report the template cannot parse (e.g. imported free text) is still shown as it is.
    const unstructured = caseData?.report && !Object.keys(caseData.report_fields ?? {}).length;
    $("report-sentence").textContent = unstructured ? caseData.report : "";
    $("report-error").textContent = reportTouched ? err.message : "";
  }
}

async function saveReport() {
  if (!sentence) {
    reportTouched = true;
    updateSentence();
    $("report-error").textContent ||= "Complete the report first.";
    throw new Error("the report is incomplete");
  }
  if (caseData.report === sentence.text) return false;
  const body = { fields: sentence.fields };
  if (caseData.report_version != null) body.base_version = caseData.report_version;
  const report = await api.put(paths.report(caseId), body);
  caseData.report = report.text;
  caseData.report_version = report.version;
  caseData.report_fields = report.fields;
  $("report-sentence").textContent = report.text;
  return true;
}

// --- saving, accepting, conflicts -----------------------------------------------------------------

async function uploadMask(path) {
  const png = await maskToPng(store.layer(LAYERS.EDIT), store.width, store.height);
  const form = new FormData();
  form.append("mask", png, "mask.png");
  if (store.baseVersion != null) form.append("base_version", String(store.baseVersion));
  return api.upload(path, form);
}

/** Run a save-like action; a 409 shows the conflict banner and keeps the drawing. */
async function guarded(label, action) {
  if (busy) return;
  busy = true;
  $("error").hidden = true;
  $("save-status").textContent = `${label}…`;
  try {
    await action();
    hideConflict();
  } catch (err) {
    $("save-status").textContent = "";
    if (err instanceof ConflictError) showConflict(err, () => guarded(label, action));
    else showError(err);
  } finally {
    busy = false;
  }
}

function afterMaskSaved(mv, state) {
  store.markSaved(mv.version);
  caseData.head_version = mv.version;
  caseData.head_kind = mv.kind;
  caseData.head_mask = mv;
  caseData.state = state;
  if (mv.kind === "accepted") {
    caseData.assignee = null;
    store.setReference(LAYERS.ACCEPTED, store.layer(LAYERS.EDIT).slice());
    renderLayers();
  }
  renderCaseInfo();
}

async function save() {
  await guarded("Saving", async () => {
    const mv = await uploadMask(paths.masks(caseId));
    afterMaskSaved(mv, "in_review");
    $("save-status").textContent = `Saved as version ${mv.version}.`;
    toast(`Saved mask version ${mv.version}.`);
  });
}

async function accept() {
  await guarded("Accepting", async () => {
    if (sentence && caseData.report !== sentence.text) await saveReport();
    const mv = await uploadMask(paths.accept(caseId));
    afterMaskSaved(mv, "labeled");
    $("save-status").textContent = `Accepted as version ${caseData.head_version}.`;
    toast("Mask accepted. Press N for the next case.");
  });
}

async function reject() {
  if (!confirm("Reject this proposal? The case goes back to unlabeled; the history keeps every version.")) return;
  await guarded("Rejecting", async () => {
    const c = await api.post(paths.reject(caseId), { reason: "" });
    caseData.state = c?.state ?? "unlabeled";
    renderCaseInfo();
    $("save-status").textContent = "Proposal rejected.";
  });
}

function showConflict(err, retry) {
  const d = typeof err.detail === "object" && err.detail !== null ? err.detail : { message: formatDetail(err.detail) };
  conflict = { detail: d, retry };
  const theirs = d.current_version != null ? ` The current version is ${d.current_version}.` : "";
  $("conflict-text").textContent =
    `Someone saved this case after you opened it (you started from version ${store.baseVersion ?? "none"}).${theirs} ` +
    "Your drawing is still here and nothing was lost: compare with their version, then save yours on top if it is right.";
  $("conflict").hidden = false;
  $("conflict").scrollIntoView({ block: "nearest" });
  $("conflict-show").disabled = d.current_version == null;
}

function hideConflict() {
  conflict = null;
  $("conflict").hidden = true;
}

function showError(err) {
  $("error").textContent = err.message || String(err);
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest" });
}

$("conflict-show").addEventListener("click", async () => {
  if (!conflict) return;
  try {
    const masks = await api.get(paths.masks(caseId));
    const list = Array.isArray(masks) ? masks : (masks.results ?? []);
    const theirs = list.find((m) => m.version === conflict.detail.current_version);
    store.setReference("theirs", await maskPixels(theirs, store.width, store.height));
    canvasView.visible.set("theirs", true);
    renderLayers();
    canvasView.requestDraw();
  } catch (err) {
    showError(err);
  }
});

$("conflict-overwrite").addEventListener("click", () => {
  if (!conflict) return;
  const { detail, retry } = conflict;
  store.baseVersion = detail.current_version ?? null; // rebase: the user has seen their version
  hideConflict();
  retry();
});

// --- propose again --------------------------------------------------------------------------------

let proposing = null;
async function proposeAgain() {
  if (proposing) return;
  const status = $("propose-status");
  try {
    await saveReport();
    status.textContent = "Queued a new proposal…";
    const job = await api.post(paths.propose(caseId), {});
    proposing = watchJob(api, job, (j) => {
      status.textContent = j.status === "pending" ? "Waiting for a GPU worker…" : `Proposal: ${j.status} ${summary(j)}`;
    });
    const final = await proposing.done;
    if (final.status !== "succeeded") {
      status.textContent = `The proposal ${final.status}: ${final.message || ""}`;
      return;
    }
    status.textContent = "New proposal ready.";
    if (!store.dirty) {
      await loadCase({ keepView: true });
    } else {
      const masks = await api.get(paths.masks(caseId));
      const list = Array.isArray(masks) ? masks : (masks.results ?? []);
      store.setReference(LAYERS.PROPOSAL, await maskPixels(latest(list, "proposal"), store.width, store.height));
      canvasView.visible.set(LAYERS.PROPOSAL, true);
      renderLayers();
      toast("New proposal shown as the 'Model proposal' layer; your drawing is kept.");
    }
  } catch (err) {
    status.textContent = "";
    showError(err);
  } finally {
    proposing = null;
  }
}

// --- next case ------------------------------------------------------------------------------------

async function nextCase() {
  if (store.dirty && !confirm("You have unsaved changes. Leave this case without saving?")) return;
  try {
    const strategy = localStorage.getItem(`worklist-strategy-${projectId}`) || "uncertainty";
    const next = await api.request("POST", paths.next(projectId), { query: { strategy } });
    const nextId = next?.id ?? next?.case?.id;
    if (!nextId) {
      toast("No more cases waiting. Back to the worklist.");
      location.href = `/projects/${projectId}/`;
      return;
    }
    window.onbeforeunload = null;
    location.href = `/projects/${projectId}/cases/${nextId}/`;
  } catch (err) {
    showError(err);
  }
}

// --- CT window/level ------------------------------------------------------------------------------

async function loadHU() {
  try {
    const response = await api.get(paths.caseHU(caseId), { raw: true });
    const buf = await response.arrayBuffer();
    const dv = new DataView(buf);
    const width = dv.getUint32(0, true);
    const height = dv.getUint32(4, true);
    if (width !== store.width || height !== store.height) return;
    hu = { width, height, values: new Float32Array(buf.slice(8)) };
    const select = $("window-preset");
    const presets = config.window_presets?.length
      ? config.window_presets.map((p) => ({ id: p.id, label: p.id.replace("_", " "), width: p.width, level: p.center }))
      : CT_PRESETS;
    for (const p of presets) {
      select.append(h("option", { value: p.id, dataset: { width: p.width, level: p.level } }, `${cap(p.label)} (W ${p.width} / L ${p.level})`));
    }
    $("window-group").hidden = false;
  } catch {
    // not windowable: keep the uploaded rendering
  }
}

const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/** Draw the scan as uploaded, or through the chosen CT window (DICOM cases). */
function showScan() {
  const opt = $("window-preset").selectedOptions[0];
  if (!hu || !opt?.value) {
    canvasView.setImage(scanRGBA, store.width, store.height);
    grey = rgbaToGrey(scanRGBA);
    return;
  }
  const g = applyWindow(hu.values, { width: Number(opt.dataset.width), level: Number(opt.dataset.level) });
  grey = Uint8Array.from(g);
  canvasView.setImage(greyToRGBA(g), hu.width, hu.height);
}

$("window-preset").addEventListener("change", showScan);

// --- toolbar --------------------------------------------------------------------------------------

function selectTool(tool) {
  input.setTool(tool);
}

input.on("tool", ({ tool }) => {
  for (const b of document.querySelectorAll(".tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
});
for (const b of document.querySelectorAll(".tool")) b.addEventListener("click", () => selectTool(b.dataset.tool));

function setBrush(r) {
  input.setBrushRadius(r);
  $("brush-size").value = String(Math.round(input.brushRadius));
  $("brush-size-value").textContent = String(Math.round(input.brushRadius));
}
$("brush-size").addEventListener("input", (e) => setBrush(Number(e.target.value)));
$("opacity").addEventListener("input", (e) => canvasView.setOpacity(Number(e.target.value) / 100));
$("outline").addEventListener("change", (e) => canvasView.setOutline(e.target.checked));
$("undo").addEventListener("click", () => undo.undo());
$("redo").addEventListener("click", () => undo.redo());
$("zoom-in").addEventListener("click", () => canvasView.zoomBy(1.25));
$("zoom-out").addEventListener("click", () => canvasView.zoomBy(0.8));
$("zoom-fit").addEventListener("click", () => canvasView.fit());
$("save").addEventListener("click", save);
$("accept").addEventListener("click", accept);
$("reject").addEventListener("click", reject);
$("next").addEventListener("click", nextCase);
$("save-report").addEventListener("click", async () => {
  try {
    const changed = await saveReport();
    toast(changed ? "Report saved." : "The report is unchanged.");
  } catch (err) {
    if (sentence) showError(err);
  }
});
$("propose").addEventListener("click", proposeAgain);
$("help").addEventListener("click", () => $("help-dialog").showModal());

undo.on("change", ({ canUndo, canRedo }) => {
  $("undo").disabled = !canUndo;
  $("redo").disabled = !canRedo;
});
let statusFrame = 0;
store.on("change", () => {
  // store.dirty compares whole masks: once per frame, not once per brush dab.
  if (statusFrame) return;
  statusFrame = requestAnimationFrame(() => {
    statusFrame = 0;
    $("save-status").textContent = store.dirty ? "Unsaved changes" : "";
  });
});
canvasView.onViewChange = (v) => {
  $("zoom-value").textContent = `${Math.round(v.scale * 100)}%`;
};
canvasView.onHover = (p) => {
  $("cursor-pos").textContent = p ? `x ${p.x}  y ${p.y}` : "";
};

// --- keyboard -------------------------------------------------------------------------------------

const TOOL_KEYS = { b: "brush", e: "eraser", p: "polygon", f: "fill", h: "pan" };
const PAN_KEYS = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };

document.addEventListener("keydown", (e) => {
  if ($("help-dialog").open || isTyping(e)) return;
  const key = e.key;
  const mod = e.ctrlKey || e.metaKey;
  if (mod && key.toLowerCase() === "z") {
    e.preventDefault();
    if (e.shiftKey) undo.redo();
    else undo.undo();
    return;
  }
  if (mod && key.toLowerCase() === "y") {
    e.preventDefault();
    undo.redo();
    return;
  }
  if (mod && key.toLowerCase() === "s") {
    e.preventDefault();
    save();
    return;
  }
  if (mod && key === "Enter") {
    e.preventDefault();
    accept();
    return;
  }
  if (mod || e.altKey) return;
  if (input.handle({ type: "keydown", key })) {
    e.preventDefault();
    return;
  }
  if (key === " ") {
    e.preventDefault();
    return;
  }
  const lower = key.toLowerCase();
  if (TOOL_KEYS[lower]) selectTool(TOOL_KEYS[lower]);
  else if (PAN_KEYS[key]) canvasView.panBy(PAN_KEYS[key][0] * (e.shiftKey ? 200 : 50), PAN_KEYS[key][1] * (e.shiftKey ? 200 : 50));
  else if (key === "[") setBrush(input.brushRadius - (input.brushRadius > 10 ? 2 : 1));
  else if (key === "]") setBrush(input.brushRadius + (input.brushRadius >= 10 ? 2 : 1));
  else if (key === "+" || key === "=") canvasView.zoomBy(1.25);
  else if (key === "-") canvasView.zoomBy(0.8);
  else if (key === "0") canvasView.fit();
  else if (lower === "o") {
    $("outline").checked = !$("outline").checked;
    canvasView.setOutline($("outline").checked);
  } else if (lower === "v") {
    canvasView.masksHidden = !canvasView.masksHidden;
    canvasView.requestDraw();
  } else if (lower === "n") nextCase();
  else if (key === "?") $("help-dialog").showModal();
  else return;
  e.preventDefault();
});
document.addEventListener("keyup", (e) => input.handle({ type: "keyup", key: e.key }));

window.onbeforeunload = (e) => {
  if (store.dirty) {
    e.preventDefault();
    return "";
  }
  return undefined;
};

// --- live project events: a proposal or an acceptance of this case made elsewhere ------------------------

function followProject(delay = 1000) {
  const socket = new WebSocket(socketUrl(paths.projectSocket(projectId)));
  socket.addEventListener("open", () => (delay = 1000));
  socket.addEventListener("message", async (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type !== "event" || msg.data?.case !== caseId || proposing || busy) return;
    if (msg.event === "proposal.created") {
      if (!store.dirty) {
        await loadCase({ keepView: true });
        toast("A new proposal arrived and is shown.");
      } else {
        toast("A new proposal arrived; your drawing is kept. Saving will ask you to compare.");
      }
    } else if (msg.event === "case.accepted" && msg.data.mask !== caseData?.head_mask?.id) {
      toast("Someone else accepted this case.", { ms: 8000 });
    }
  });
  socket.addEventListener("close", (e) => {
    if (e.code !== 4403) setTimeout(() => followProject(Math.min(30000, delay * 2)), delay);
  });
}

buildReportForm();
followProject();
loadCase().catch((err) => {
  setStatus("");
  showError(err);
});
