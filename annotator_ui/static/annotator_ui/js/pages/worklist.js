// Worklist: the project's cases ordered by the chosen strategy, with thumbnails, filters, state badges,
// where report and mask disagree by zone, and who holds each case; "Start next case" claims one through
// the server. The order is handed to the editor ("case n of N"). The upload form adds scans, with the
// report of a single scan in the template's form or a CSV/Excel file of reports for many.

import { ApiError, formatDetail } from "../api.js";
import { api, badge, fmtNumber, h, pageConfig, toast } from "../dom.js";
import { paths, socketUrl } from "../endpoints.js";
import { makeQueue } from "../nav.js";
import { ReportForm } from "../report_form.js";
import { disagreementWords } from "../zones.js";

const config = pageConfig();
const projectId = config.project.id;
const $ = (id) => document.getElementById(id);
const STRATEGY_KEY = `worklist-strategy-${projectId}`;
const QUEUE_KEY = `lvit:queue:p${projectId}`;
const COLUMNS = 8;

const ORDERING = { uncertainty: "-al_score", inconsistency: "-inconsistency", random: null };

$("strategy").value = localStorage.getItem(STRATEGY_KEY) || "uncertainty";

function query() {
  const f = $("filters").elements;
  const holder = f.holder.value;
  return {
    state: f.state.value,
    split: f.split.value,
    assignee: holder === "me" ? "me" : holder === "nobody" ? "none" : "",
    search: f.search.value.trim(),
    ordering: ORDERING[f.strategy.value] ?? "",
  };
}

function disagreementCell(c) {
  if (c.inconsistency == null) return h("td", { class: "muted" }, "—");
  const words = disagreementWords(c.zones);
  if (!words.length && c.inconsistency === 0) return h("td", { class: "ok" }, "agree");
  return h(
    "td",
    { class: "disagreement", title: `inconsistency ${fmtNumber(c.inconsistency)}` },
    h("span", { class: "num" }, fmtNumber(c.inconsistency, 2)),
    words.length ? h("span", { class: "zones" }, ` ${words.join(", ")}`) : null,
  );
}

function row(c) {
  const href = `/projects/${projectId}/cases/${c.id}/`;
  return h(
    "tr",
    { "data-case": c.id },
    h(
      "td",
      { class: "thumb" },
      h(
        "a",
        { href, tabindex: "-1", "aria-hidden": "true" },
        h("img", { src: c.thumbnail_url ?? `${paths.caseImage(c.id)}?size=64`, alt: "", loading: "lazy", width: 48, height: 48 }),
      ),
    ),
    h("td", {}, h("a", { href }, c.name)),
    h("td", {}, badge(c.state)),
    h("td", {}, c.split),
    h("td", { class: "num" }, fmtNumber(c.al_score)),
    disagreementCell(c),
    h("td", { class: "report", title: c.report ?? "" }, c.report ?? "—"),
    h("td", {}, c.assignee ? h("span", { class: "holder" }, c.assignee === config.user.username ? "you" : c.assignee) : "—"),
  );
}

let loadSeq = 0;
async function load() {
  const seq = ++loadSeq;
  const rows = $("case-rows");
  try {
    const page = await api.get(paths.cases(projectId), { query: { ...query(), limit: 200 } });
    if (seq !== loadSeq) return;
    const cases = Array.isArray(page) ? page : page.results;
    const total = Array.isArray(page) ? page.length : page.count;
    if (!cases.length) {
      rows.replaceChildren(h("tr", {}, h("td", { colspan: COLUMNS, class: "muted" }, "No cases match. Upload scans below.")));
    } else {
      rows.replaceChildren(...cases.map(row));
    }
    // The editor shows "case n of N" in this order.
    sessionStorage.setItem(QUEUE_KEY, JSON.stringify(makeQueue(cases.map((c) => c.id), total)));
    $("case-count").textContent = `${total} case${total === 1 ? "" : "s"}${total > cases.length ? `, showing ${cases.length}` : ""}`;
  } catch (err) {
    rows.replaceChildren(h("tr", {}, h("td", { colspan: COLUMNS, class: "error" }, err.message)));
  }
}

let debounce = null;
$("filters").addEventListener("input", () => {
  localStorage.setItem(STRATEGY_KEY, $("strategy").value);
  clearTimeout(debounce);
  debounce = setTimeout(load, 200);
});
$("filters").addEventListener("submit", (e) => e.preventDefault());

$("next-case").addEventListener("click", async () => {
  try {
    const q = { strategy: $("strategy").value, split: $("filter-split").value };
    const next = await api.request("POST", paths.next(projectId), { query: q });
    const id = next?.id ?? next?.case?.id;
    if (!id) return toast("No cases are waiting for review.");
    location.href = `/projects/${projectId}/cases/${id}/`;
  } catch (err) {
    toast(err.message, { error: true });
  }
});

// --- upload ---------------------------------------------------------------------------------------------

const reportForm = new ReportForm({
  template: config.report_template,
  form: $("upload-report-form"),
  sentence: $("upload-sentence"),
  errors: $("upload-report-error"),
  idPrefix: "up",
});

const IMAGE_EXT = /\.(png|jpe?g|tiff?|bmp|dcm|dicom|zip)$/i;
const mode = () => document.querySelector('input[name="report-mode"]:checked').value;

function syncMode() {
  const files = [...$("upload-files").files];
  const single = files.length === 1 && !/\.zip$/i.test(files[0].name);
  $("mode-form").disabled = files.length > 0 && !single;
  if ($("mode-form").disabled && mode() === "form") $("mode-table").checked = true;
  $("upload-report").hidden = mode() !== "form";
  for (const el of document.querySelectorAll(".table-only")) el.hidden = mode() !== "table";
  $("upload-reports").required = mode() === "table";
}
$("upload-files").addEventListener("change", syncMode);
for (const r of document.querySelectorAll('input[name="report-mode"]')) r.addEventListener("change", syncMode);
syncMode();

/** Show what went wrong, naming the file(s); it stays until the next upload. */
function showUploadErrors(items) {
  const box = $("upload-errors");
  box.replaceChildren(
    h("p", {}, h("strong", {}, "Nothing was uploaded. "), "Fix these and upload again:"),
    h(
      "ul",
      {},
      items.map((it) => h("li", {}, it.file ? h("code", {}, it.file) : null, it.file ? ": " : null, it.error)),
    ),
  );
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

/** The server's error as a list of {file, error}: per-file errors when it sends them, else its message. */
function errorItems(err, files) {
  const d = err instanceof ApiError ? err.detail : err.message;
  if (d && typeof d === "object" && Array.isArray(d.errors)) return d.errors;
  const text = formatDetail(d) || err.message;
  const named = files.find((f) => text.includes(f.name));
  return [{ file: named?.name ?? (files.length === 1 ? files[0].name : null), error: text }];
}

function setProgress(fraction) {
  $("upload-progress").hidden = fraction === null;
  if (fraction === null) return;
  const pct = Math.round(100 * fraction);
  $("upload-bar").setAttribute("aria-valuenow", String(pct));
  $("upload-bar").querySelector(".bar").style.width = `${pct}%`;
}

$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const files = [...$("upload-files").files];
  if (!files.length) return;
  $("upload-errors").hidden = true;
  const status = $("upload-status");
  const wrongType = files.filter((f) => !IMAGE_EXT.test(f.name));
  if (wrongType.length) {
    showUploadErrors(wrongType.map((f) => ({ file: f.name, error: "not an image type the studio reads (PNG, JPEG, TIFF, BMP, DICOM or a zip)" })));
    return;
  }
  const form = new FormData();
  for (const f of files) form.append("image", f, f.name);
  form.append("split", $("upload-split").value);
  if (mode() === "form") {
    if (files.length !== 1) {
      showUploadErrors([{ file: null, error: "a report written here belongs to one image; upload a CSV/Excel file of reports for several" }]);
      return;
    }
    if (!reportForm.isBlank()) {
      if (!reportForm.validate()) {
        status.textContent = "Complete the report (see the fields marked above) or choose “None now”.";
        return;
      }
      form.append("fields", JSON.stringify(reportForm.rendered.fields));
    }
  } else if (mode() === "table") {
    const table = $("upload-reports").files[0];
    if (!table) {
      showUploadErrors([{ file: null, error: "choose the CSV or Excel file of reports, or another report option" }]);
      return;
    }
    form.append("reports", table, table.name);
  }
  status.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`;
  setProgress(0);
  try {
    const created = await api.uploadWithProgress(paths.cases(projectId), form, { onProgress: (a, b) => setProgress(a / b) });
    const list = Array.isArray(created) ? created : (created.cases ?? created.results ?? [created]);
    const withReport = list.filter((c) => c.report).length;
    status.textContent =
      `Uploaded ${list.length} case${list.length === 1 ? "" : "s"}.` +
      (withReport ? ` ${withReport} with a report.` : "");
    $("upload-form").reset();
    reportForm.reset();
    syncMode();
    await load();
  } catch (err) {
    status.textContent = "";
    showUploadErrors(errorItems(err, files));
  } finally {
    setProgress(null);
  }
});

/** Refresh when the project changes elsewhere (a proposal arrived, a case was accepted, a model promoted). */
function follow(delay = 1000, reconnect = false) {
  const socket = new WebSocket(socketUrl(paths.projectSocket(projectId)));
  socket.addEventListener("open", () => {
    delay = 1000;
    if (reconnect) load(); // catch up on what happened while the socket was down
  });
  socket.addEventListener("message", (e) => {
    if (JSON.parse(e.data).type !== "event") return;
    clearTimeout(debounce);
    debounce = setTimeout(load, 300);
  });
  socket.addEventListener("close", (e) => {
    if (e.code !== 4403) setTimeout(() => follow(Math.min(30000, delay * 2), true), delay);
  });
}

load();
follow();
