// Worklist: the project's cases ordered by the chosen strategy, with filters, state badges and who holds each
// case; "Start next case" claims one through the server; the upload form adds scans.

import { api, badge, fmtNumber, h, pageConfig, toast } from "../dom.js";
import { paths, socketUrl } from "../endpoints.js";

const config = pageConfig();
const projectId = config.project.id;
const $ = (id) => document.getElementById(id);
const STRATEGY_KEY = `worklist-strategy-${projectId}`;

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
      rows.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No cases match. Upload scans below.")));
    } else {
      rows.replaceChildren(
        ...cases.map((c) =>
          h(
            "tr",
            { "data-case": c.id },
            h("td", {}, h("a", { href: `/projects/${projectId}/cases/${c.id}/` }, c.name)),
            h("td", {}, badge(c.state)),
            h("td", {}, c.split),
            h("td", { class: "num" }, fmtNumber($("strategy").value === "inconsistency" ? c.inconsistency : c.al_score)),
            h("td", { class: "report", title: c.report ?? "" }, c.report ?? "—"),
            h("td", {}, c.assignee ? h("span", { class: "holder" }, c.assignee === config.user.username ? "you" : c.assignee) : "—"),
          ),
        ),
      );
    }
    $("case-count").textContent = `${total} case${total === 1 ? "" : "s"}${total > cases.length ? `, showing ${cases.length}` : ""}`;
  } catch (err) {
    rows.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "error" }, err.message)));
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
    const query = { strategy: $("strategy").value, split: $("filter-split").value };
    const next = await api.request("POST", paths.next(projectId), { query });
    const id = next?.id ?? next?.case?.id;
    if (!id) return toast("No cases are waiting for review.");
    location.href = `/projects/${projectId}/cases/${id}/`;
  } catch (err) {
    toast(err.message, { error: true });
  }
});

$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const files = $("upload-files").files;
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("image", f, f.name);
  form.append("split", $("upload-split").value);
  const status = $("upload-status");
  status.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`;
  try {
    const created = await api.upload(paths.cases(projectId), form);
    const list = Array.isArray(created) ? created : (created.cases ?? created.results ?? [created]);
    status.textContent = `Uploaded ${list.length} case${list.length === 1 ? "" : "s"}.`;
    $("upload-form").reset();
    await load();
  } catch (err) {
    status.textContent = "";
    toast(`Upload failed: ${err.message}`, { error: true, ms: 8000 });
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
