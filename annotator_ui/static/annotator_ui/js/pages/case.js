// Case editor: wires the DOM-free store, undo stack, input machine, view transform and the server
// adapter (case_session.js: loading, saving, conflicts) to the canvas view, the toolbar, the panels
// (display, proposal, zones, history) and the report form.

import { ConflictError } from "../api.js";
import { CanvasView, LAYER_STYLES } from "../canvas_view.js";
import { CaseSession, ReportMissingError } from "../case_session.js";
import { api, badge, h, isTyping, loadPixels, maskToPng, pageConfig, toast } from "../dom.js";
import { paths, socketUrl } from "../endpoints.js";
import { ViewTransform } from "../geometry.js";
import { InputMachine } from "../input.js";
import { watchJob } from "../job_watch.js";
import { summary } from "../jobs.js";
import { sourceLabel } from "../pacs.js";
import { popVisit, previousCase, pushVisit, queuePosition } from "../nav.js";
import { Preferences } from "../prefs.js";
import { ReportForm } from "../report_form.js";
import { LAYERS, MaskStore } from "../store.js";
import { UndoStack } from "../undo.js";
import { hasWindowableValues } from "../windowing.js";
import { DisplayControl } from "./case_display.js";
import { HistoryPanel } from "./case_history.js";
import { ProposalPanel } from "./case_proposal.js";
import { ZonePanel } from "./case_zones.js";

const config = pageConfig();
const projectId = config.project.id;
const caseId = config.case.id;
const $ = (id) => document.getElementById(id);

const prefs = new Preferences({
  storage: localStorage,
  userId: config.user.id,
  projectId,
  initial: config.preferences ?? null,
  remote: config.preferences_url
    ? { save: (values, { keepalive }) => api.put(config.preferences_url, values, { keepalive }) }
    : null,
});
addEventListener("pagehide", () => prefs.flush());
const store = new MaskStore();
const undo = new UndoStack(store);
const view = new ViewTransform({ minScale: 0.05, maxScale: 40 });
let grey = null; // the displayed grey levels, for image-guided flood fill
const input = new InputMachine({ store, undo, view, image: () => grey });
const canvas = $("canvas");
const canvasView = new CanvasView({ canvas, store, input, view });
const session = new CaseSession({ api, store, caseId, codec: { pixels: loadPixels, encodeMask: maskToPng } });
const display = new DisplayControl({ canvasView, prefs, onGrey: (g) => (grey = g) });
const reportForm = new ReportForm({
  template: config.report_template,
  form: $("report-form"),
  sentence: $("report-sentence"),
  errors: $("report-error"),
  onChange: () => zones.refresh(),
});
const zones = new ZonePanel({
  store,
  canvasView,
  prefs,
  template: config.report_template,
  fields: () => reportForm.rendered?.fields ?? session.caseData?.report_fields ?? null,
});
const proposal = new ProposalPanel({
  api,
  session,
  store,
  canvasView,
  prefs,
  projectId,
  onLayers: () => renderLayers(),
});
const history = new HistoryPanel({
  session,
  store,
  canvasView,
  onRestore: (mv) => restore(mv),
  onError: (err) => showError(err),
});

let busy = false;
let valuesLoaded = false;

// --- layer visibility (remembered per user and project) ---------------------------------------------

const DEFAULT_VISIBLE = { [LAYERS.EDIT]: true, [LAYERS.PROPOSAL]: true, [LAYERS.THRESHOLD]: true, [LAYERS.THEIRS]: true };
for (const name of Object.values(LAYERS)) {
  const saved = prefs.get("layers")?.[name];
  canvasView.visible.set(name, typeof saved === "boolean" ? saved : !!DEFAULT_VISIBLE[name]);
}
canvasView.setOpacity(Number(prefs.get("opacity")) / 100);
$("opacity").value = String(prefs.get("opacity"));
$("outline").checked = !!prefs.get("outline");
canvasView.setOutline(!!prefs.get("outline"));

function renderLayers() {
  const order = [LAYERS.EDIT, LAYERS.PROPOSAL, LAYERS.PREVIOUS, LAYERS.THRESHOLD, LAYERS.PSEUDO, LAYERS.ACCEPTED, LAYERS.THEIRS];
  $("layers").replaceChildren(
    ...order
      .filter((n) => store.has(n))
      .map((name) => {
        const style = LAYER_STYLES[name];
        const id = `layer-${name}`;
        const box = h("input", {
          type: "checkbox",
          id,
          checked: !!canvasView.visible.get(name),
          onchange: (e) => {
            canvasView.setVisible(name, e.target.checked);
            if (name !== LAYERS.THEIRS && name !== LAYERS.THRESHOLD) prefs.set("layers", { [name]: e.target.checked }, { merge: true });
          },
        });
        const swatch = style.outline
          ? h("span", { class: "swatch outline", style: `border-color: rgb(${style.color.join(",")})`, "aria-hidden": "true" })
          : h("span", { class: "swatch", style: `background: rgb(${style.color.join(",")})`, "aria-hidden": "true" });
        return h("li", {}, box, swatch, h("label", { for: id }, style.label));
      }),
  );
}

// --- loading ------------------------------------------------------------------------------------------

async function load({ keepEdit = false } = {}) {
  setStatus("Loading case…");
  const [, scan] = await Promise.all([
    session.load({ keepEdit, pseudoUrl: config.case.has_pseudo ? paths.pseudoPng(caseId) : null }),
    keepEdit ? null : loadPixels(paths.caseImage(caseId)),
  ]);
  const c = session.caseData;
  if (scan) {
    if (scan.width !== c.width || scan.height !== c.height) throw new Error("the scan does not match the case size");
    display.setScan(scan.rgba, c.width, c.height, c.meta ?? null);
    canvasView.fit();
  }
  zones.setBox(c.zones?.body_box ?? c.meta?.body_box ?? null);
  if (!keepEdit || !reportForm.touched) reportForm.fill(c.report_fields ?? {}, { fallbackText: c.report ?? "" });
  renderLayers();
  history.render();
  await proposal.render();
  setStatus("");
  renderCaseInfo(); // last: the state badge says the case is ready
  if (config.case.dicom && !valuesLoaded && hasWindowableValues(c.meta)) loadValues();
}

function setStatus(text) {
  $("stage-status").textContent = text;
}

function renderCaseInfo() {
  const c = session.caseData;
  $("case-name").textContent = c.name;
  $("case-state").replaceWith(Object.assign(badge(c.state), { id: "case-state" }));
  const parts = [`${c.width}×${c.height}`, c.split, c.original_format?.toUpperCase()];
  if (c.head_version) parts.push(`mask v${c.head_version} (${c.head_kind})`);
  else parts.push("no mask yet");
  if (c.assignee) parts.push(`held by ${c.assignee}`);
  parts.push(sourceLabel(c.source));
  $("case-meta").textContent = parts.filter(Boolean).join(" · ");
  $("reject").disabled = !session.canReject;
  $("reject").title = session.canReject
    ? "Reject the model's proposal: the case goes back to unlabeled"
    : "Only an uncorrected model proposal can be rejected";
}

/** A DICOM case's modality-LUT values, for window/level in Hounsfield units. */
async function loadValues() {
  try {
    const response = await api.get(paths.caseHU(caseId), { raw: true });
    const buf = await response.arrayBuffer();
    const dv = new DataView(buf);
    const width = dv.getUint32(0, true);
    const height = dv.getUint32(4, true);
    if (width !== store.width || height !== store.height) return;
    valuesLoaded = true;
    display.setValues(new Float32Array(buf.slice(8)));
  } catch {
    // not decodable again: the display keeps working on the converted grey levels
  }
}

// --- saving, accepting, conflicts ---------------------------------------------------------------------

/** Run a write: one at a time, status in the footer, server errors in the banner; a 409 keeps the drawing. */
async function guarded(label, action) {
  if (busy) return;
  busy = true;
  $("error").hidden = true;
  $("save-status").textContent = `${label}…`;
  try {
    await action();
  } catch (err) {
    $("save-status").textContent = "";
    if (!(err instanceof ConflictError)) showError(err);
  } finally {
    busy = false;
  }
}

function afterSave(mv) {
  renderCaseInfo();
  renderLayers();
  history.render();
  zones.refresh();
  return mv;
}

async function save() {
  await guarded("Saving", async () => {
    const mv = afterSave(await session.saveMask());
    $("save-status").textContent = `Saved as version ${mv.version}.`;
    toast(`Saved mask version ${mv.version}.`);
  });
}

/** Save the report when the form has one; false (with the problems shown) when it is incomplete. */
async function saveReportIfFilled() {
  if (reportForm.isBlank()) return true;
  if (!reportForm.validate()) return false;
  await session.saveReport(reportForm.rendered);
  reportForm.clearProblems();
  return true;
}

function askDialog(id) {
  const dialog = $(id);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function accept() {
  await guarded("Accepting", async () => {
    if (!(await saveReportIfFilled())) {
      $("save-status").textContent = "Not accepted: complete the report first (see the fields marked below).";
      return;
    }
    let withoutReport = false;
    if (!session.caseData.report) {
      withoutReport = await askDialog("no-report-dialog");
      if (!withoutReport) {
        $("save-status").textContent = "Not accepted: write the report first.";
        reportForm.validate();
        return;
      }
    }
    let mv;
    try {
      mv = await session.accept({ withoutReport });
    } catch (err) {
      if (!(err instanceof ReportMissingError) || !(await askDialog("no-report-dialog"))) throw err;
      mv = await session.accept({ withoutReport: true });
    }
    afterSave(mv);
    $("save-status").textContent = `Accepted as version ${mv.version}${withoutReport ? " (without a report)" : ""}.`;
    toast("Mask accepted. Press N for the next case.");
    proposal.loadReadiness();
  });
}

async function reject() {
  if (!session.canReject) return;
  $("reject-reason").value = "";
  if (!(await askDialog("reject-dialog"))) return;
  await guarded("Rejecting", async () => {
    await session.reject($("reject-reason").value.trim());
    await load();
    $("save-status").textContent = "Proposal rejected; the case is unlabeled again.";
  });
}

async function restore(mv) {
  await guarded("Restoring", async () => {
    const restored = await session.restore(mv);
    afterSave(restored);
    $("save-status").textContent = `Version ${mv.version} restored as version ${restored.version}.`;
    toast(`Restored v${mv.version} as v${restored.version}.`);
  });
}

session.on("conflict", (c) => {
  if (!c) {
    $("conflict").hidden = true;
    return;
  }
  const theirs = c.current != null ? ` The current version is ${c.current}.` : "";
  const kept = c.kept != null ? ` Your upload was kept as version ${c.kept}.` : "";
  $("conflict-text").textContent =
    `Someone saved this case after you opened it.${theirs}${kept} ` +
    "Your drawing is still here and nothing was lost: compare with their version, then save yours on top if it is right.";
  $("conflict").hidden = false;
  $("conflict-show").disabled = c.current == null;
  $("conflict").scrollIntoView({ block: "nearest" });
});

$("conflict-show").addEventListener("click", async () => {
  try {
    store.setReference(LAYERS.THEIRS, await session.theirs());
    canvasView.visible.set(LAYERS.THEIRS, true);
    renderLayers();
    canvasView.requestDraw();
  } catch (err) {
    showError(err);
  }
});

$("conflict-overwrite").addEventListener("click", () =>
  guarded("Saving", async () => {
    const mv = afterSave(await session.overwrite());
    store.setReference(LAYERS.THEIRS, null);
    renderLayers();
    $("save-status").textContent = `Saved as version ${mv.version}.`;
  }),
);

function showError(err) {
  $("error").textContent = err.message || String(err);
  $("error").hidden = false;
  $("error").scrollIntoView({ block: "nearest" });
}

// --- report -------------------------------------------------------------------------------------------

$("save-report").addEventListener("click", async () => {
  if (!reportForm.validate()) return;
  try {
    const changed = await session.saveReport(reportForm.rendered);
    $("error").hidden = true;
    reportForm.clearProblems();
    toast(changed ? "Report saved." : "The report is unchanged.");
    zones.refresh();
  } catch (err) {
    showError(err);
  }
});

// --- propose again ------------------------------------------------------------------------------------

let proposing = null;
async function proposeAgain() {
  if (proposing || !proposal.hasModel) return;
  const status = $("propose-status");
  if (!reportForm.validate()) {
    status.textContent = "Complete the report first: the model reads it.";
    return;
  }
  try {
    await session.saveReport(reportForm.rendered);
    status.textContent = "Queued a new proposal…";
    const job = await session.propose();
    proposing = watchJob(api, job, (j) => {
      status.textContent = j.status === "pending" ? "Waiting for a worker…" : `Proposal: ${j.status} ${summary(j)}`;
    });
    const final = await proposing.done;
    if (final.status !== "succeeded") {
      status.textContent = `The proposal ${final.status}: ${final.message || ""}`;
      return;
    }
    await load({ keepEdit: store.dirty });
    proposal.showNew();
    status.textContent =
      session.proposals().length > 1 ? "New proposal ready. Switch above to see the previous one." : "New proposal ready.";
    if (store.dirty) toast("The new proposal is shown as an outline; your drawing is kept.");
  } catch (err) {
    status.textContent = "";
    showError(err);
  } finally {
    proposing = null;
  }
}

// --- moving between cases -----------------------------------------------------------------------------

const QUEUE_KEY = `lvit:queue:p${projectId}`;
const VISITS_KEY = `lvit:visits:p${projectId}`;
const readJSON = (key) => {
  try {
    return JSON.parse(sessionStorage.getItem(key) ?? "null");
  } catch {
    return null;
  }
};
sessionStorage.setItem(VISITS_KEY, JSON.stringify(pushVisit(readJSON(VISITS_KEY), caseId)));

function renderNav() {
  const pos = queuePosition(readJSON(QUEUE_KEY), caseId);
  $("case-position").textContent = pos ? `Case ${pos.index} of ${pos.total}` : "";
  const prev = previousCase(readJSON(VISITS_KEY), caseId);
  $("prev").disabled = prev === null;
}

function leave(url) {
  if (store.dirty && !confirm("You have unsaved changes. Leave this case without saving?")) return false;
  window.onbeforeunload = null;
  location.href = url;
  return true;
}

function previous() {
  const prev = previousCase(readJSON(VISITS_KEY), caseId);
  if (prev === null) return;
  const history = popVisit(readJSON(VISITS_KEY), caseId);
  if (leave(`/projects/${projectId}/cases/${prev}/`)) sessionStorage.setItem(VISITS_KEY, JSON.stringify(history));
}

async function nextCase() {
  if (store.dirty && !confirm("You have unsaved changes. Leave this case without saving?")) return;
  try {
    const strategy = localStorage.getItem(`worklist-strategy-${projectId}`) || "uncertainty";
    const next = await api.request("POST", paths.next(projectId), { query: { strategy } });
    const nextId = next?.id ?? next?.case?.id;
    window.onbeforeunload = null;
    if (!nextId) {
      toast("No more cases waiting. Back to the worklist.");
      location.href = `/projects/${projectId}/`;
      return;
    }
    location.href = `/projects/${projectId}/cases/${nextId}/`;
  } catch (err) {
    showError(err);
  }
}

// --- toolbar (choices remembered per user and project) ------------------------------------------------

input.on("tool", ({ tool }) => {
  for (const b of document.querySelectorAll(".tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
});
input.on("window", (e) => display.drag(e));
for (const b of document.querySelectorAll(".tool")) b.addEventListener("click", () => input.setTool(b.dataset.tool));

function setBrush(r) {
  input.setBrushRadius(r);
  const v = Math.round(input.brushRadius);
  $("brush-size").value = String(v);
  $("brush-size-value").textContent = String(v);
  prefs.set("brushRadius", input.brushRadius);
}
input.setBrushRadius(Number(prefs.get("brushRadius")) || 6);
$("brush-size").value = String(Math.round(input.brushRadius));
$("brush-size-value").textContent = String(Math.round(input.brushRadius));

function setOutline(on) {
  $("outline").checked = on;
  canvasView.setOutline(on);
  prefs.set("outline", on);
}

$("brush-size").addEventListener("input", (e) => setBrush(Number(e.target.value)));
$("opacity").addEventListener("input", (e) => {
  canvasView.setOpacity(Number(e.target.value) / 100);
  prefs.set("opacity", Number(e.target.value));
});
$("outline").addEventListener("change", (e) => setOutline(e.target.checked));
$("undo").addEventListener("click", () => undo.undo());
$("redo").addEventListener("click", () => undo.redo());
$("zoom-in").addEventListener("click", () => canvasView.zoomBy(1.25));
$("zoom-out").addEventListener("click", () => canvasView.zoomBy(0.8));
$("zoom-fit").addEventListener("click", () => canvasView.fit());
$("save").addEventListener("click", save);
$("accept").addEventListener("click", accept);
$("reject").addEventListener("click", reject);
$("next").addEventListener("click", nextCase);
$("prev").addEventListener("click", previous);
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

// --- keyboard -----------------------------------------------------------------------------------------
// Letters are shortcuts unless a text field has focus. Space and the arrow keys pan only while the
// scan (the canvas) has focus: in the report form they choose radio buttons and tick boxes as usual.

const TOOL_KEYS = { b: "brush", e: "eraser", p: "polygon", f: "fill", h: "pan", w: "window" };
const PAN_KEYS = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
const dialogOpen = () => [...document.querySelectorAll("dialog")].some((d) => d.open);

document.addEventListener("keydown", (e) => {
  if (dialogOpen()) return;
  const key = e.key;
  const mod = e.ctrlKey || e.metaKey;
  const onCanvas = document.activeElement === canvas;
  if (mod && key === "Enter") {
    e.preventDefault();
    accept();
    return;
  }
  if (mod && key.toLowerCase() === "s") {
    e.preventDefault();
    save();
    return;
  }
  if (isTyping(e)) return;
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
  if (mod || e.altKey) return;
  if (onCanvas && input.handle({ type: "keydown", key })) {
    e.preventDefault();
    return;
  }
  if (key === " " || PAN_KEYS[key]) {
    if (!onCanvas) return; // the focused control's own meaning (tick a box, move between choices)
    e.preventDefault();
    if (PAN_KEYS[key]) canvasView.panBy(PAN_KEYS[key][0] * (e.shiftKey ? 200 : 50), PAN_KEYS[key][1] * (e.shiftKey ? 200 : 50));
    return;
  }
  const lower = key.toLowerCase();
  if (key === "N") previous();
  else if (TOOL_KEYS[lower]) input.setTool(TOOL_KEYS[lower]);
  else if (key === "[") setBrush(input.brushRadius - (input.brushRadius > 10 ? 2 : 1));
  else if (key === "]") setBrush(input.brushRadius + (input.brushRadius >= 10 ? 2 : 1));
  else if (key === "+" || key === "=") canvasView.zoomBy(1.25);
  else if (key === "-") canvasView.zoomBy(0.8);
  else if (key === "0") canvasView.fit();
  else if (lower === "o") setOutline(!$("outline").checked);
  else if (lower === "v") {
    canvasView.masksHidden = !canvasView.masksHidden;
    canvasView.requestDraw();
  } else if (lower === "i") display.toggleInvert();
  else if (lower === "r") display.reset();
  else if (lower === "z") zones.toggle();
  else if (lower === "n") nextCase();
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

// --- live project events: a proposal or an acceptance of this case made elsewhere ---------------------

function followProject(delay = 1000) {
  const socket = new WebSocket(socketUrl(paths.projectSocket(projectId)));
  socket.addEventListener("open", () => (delay = 1000));
  socket.addEventListener("message", async (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type !== "event" || msg.data?.case !== caseId || proposing || busy) return;
    if (msg.event === "proposal.created") {
      await load({ keepEdit: store.dirty });
      toast(store.dirty ? "A new proposal arrived (outline); your drawing is kept." : "A new proposal arrived and is shown.");
    } else if (msg.event === "case.accepted" && msg.data.mask !== session.caseData?.head_mask?.id) {
      toast("Someone else accepted this case.", { ms: 8000 });
    }
  });
  socket.addEventListener("close", (e) => {
    if (e.code !== 4403) setTimeout(() => followProject(Math.min(30000, delay * 2)), delay);
  });
}

renderNav();
followProject();
proposal.loadReadiness();
// The server keeps the first open per user (effort saved: seconds from first open to accept); a failure only
// leaves that figure empty, so it never blocks the editor.
api.post(paths.caseOpen(caseId), {}).catch(() => {});
load().catch((err) => {
  setStatus("");
  showError(err);
});
