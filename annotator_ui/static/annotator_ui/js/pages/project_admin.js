// Project page: members and roles (admins edit, everyone reads), dataset import with upload and
// processing progress and every bad file listed, and the audit log in words.

import { ApiError, formatDetail } from "../api.js";
import { AUDIT_ACTIONS, describeAudit } from "../audit.js";
import { api, fmtDate, h, pageConfig, toast } from "../dom.js";
import { paths } from "../endpoints.js";
import { watchJob } from "../job_watch.js";
import { progressFraction } from "../jobs.js";

const config = pageConfig();
const projectId = config.project.id;
const isAdmin = config.project.role === "admin";
const $ = (id) => document.getElementById(id);
const ROLES = ["annotator", "reviewer", "admin"];
const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

for (const el of document.querySelectorAll(".admin-only")) el.hidden = !isAdmin;

// --- members --------------------------------------------------------------------------------------------

function memberError(err) {
  $("member-error").textContent = err ? err.message : "";
}

async function loadMembers() {
  const members = await api.get(paths.members(projectId));
  $("member-rows").replaceChildren(
    ...members.map((m) => {
      const me = m.username === config.user.username;
      const role = isAdmin
        ? h(
            "select",
            {
              "aria-label": `Role of ${m.username}`,
              onchange: (e) => setRole(m, e.target.value, e.target),
            },
            ROLES.map((r) => h("option", { value: r, selected: r === m.role }, cap(r))),
          )
        : cap(m.role);
      const remove = isAdmin
        ? h("button", { type: "button", class: "danger small-button", onclick: () => removeMember(m) }, `Remove ${m.username}`)
        : null;
      return h(
        "tr",
        { "data-user": m.username },
        h("td", {}, m.username, me ? h("span", { class: "muted" }, " (you)") : null),
        h("td", {}, role),
        h("td", {}, fmtDate(m.created_at)),
        h("td", {}, remove),
      );
    }),
  );
}

async function setRole(member, role, select) {
  memberError(null);
  try {
    await api.put(paths.member(projectId, member.user_id), { role });
    $("member-status").textContent = `${member.username} is now ${role}.`;
    loadAudit({ reset: true });
  } catch (err) {
    select.value = member.role;
    memberError(err);
  }
}

async function removeMember(member) {
  if (!confirm(`Remove ${member.username} from this project? Cases they hold are released.`)) return;
  memberError(null);
  try {
    await api.delete(paths.member(projectId, member.user_id));
    $("member-status").textContent = `${member.username} was removed.`;
    await loadMembers();
    loadAudit({ reset: true });
  } catch (err) {
    memberError(err);
  }
}

$("member-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  memberError(null);
  const user = $("member-user").value.trim();
  try {
    await api.post(paths.members(projectId), { user, role: $("member-role").value });
    $("member-status").textContent = `${user} added as ${$("member-role").value}.`;
    e.target.reset();
    await loadMembers();
    loadAudit({ reset: true });
  } catch (err) {
    memberError(err);
  }
});

// --- import ---------------------------------------------------------------------------------------------

const PHASES = { upload: "Uploading", validating: "Checking files", storing: "Storing cases", queued: "Waiting for a worker" };

function setProgress(fraction, text) {
  const box = $("import-progress");
  box.hidden = false;
  const seen = new Set((box.dataset.phases ?? "").split("|").filter(Boolean));
  seen.add(text.replace(/\d+/g, "#"));
  box.dataset.phases = [...seen].join("|"); // the distinct phases shown, for whoever follows along
  const pct = Math.round(100 * Math.max(0, Math.min(1, fraction)));
  $("import-bar").setAttribute("aria-valuenow", String(pct));
  $("import-bar").querySelector(".bar").style.width = `${pct}%`;
  $("import-phase").textContent = text;
}

function importPhase(job) {
  const p = job.progress ?? {};
  const phase = PHASES[p.phase] ?? (job.status === "pending" ? PHASES.queued : p.phase ?? job.status);
  const count = p.total ? ` ${p.done ?? 0} of ${p.total} files` : "";
  return `${phase}${count}…`;
}

/** Per-file problems of a failed import: a table (file, what is wrong). */
function problemTable(errors) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "import-errors" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "File"), h("th", { scope: "col" }, "Problem"))),
      h(
        "tbody",
        {},
        errors.map((e) => h("tr", {}, h("td", {}, h("code", {}, e.file ?? "—")), h("td", {}, e.error ?? formatDetail(e)))),
      ),
    ),
  );
}

function showImportFailure(detail) {
  const d = typeof detail === "object" && detail !== null ? detail : { message: formatDetail(detail) };
  const errors = Array.isArray(d.errors) ? d.errors : [];
  $("import-result").replaceChildren(
    h(
      "div",
      { class: "banner error", role: "alert" },
      h("p", {}, h("strong", {}, "Nothing was imported. "), d.message ?? formatDetail(d)),
      errors.length ? problemTable(errors) : null,
      d.more_errors ? h("p", { class: "small" }, `…and ${d.more_errors} more.`) : null,
    ),
  );
}

function showImportResult(r) {
  const splits = Object.entries(r.splits ?? {}).map(([k, v]) => `${v} ${k}`).join(", ");
  $("import-result").replaceChildren(
    h(
      "div",
      { class: "banner ok-banner", role: "status" },
      h(
        "p",
        {},
        h("strong", {}, `Imported ${r.cases} case${r.cases === 1 ? "" : "s"}`),
        ` (${splits || "no splits"}): ${r.labeled} with an accepted mask, ${r.reports} with a report (${r.structured_reports} structured).`,
      ),
      r.warnings?.length
        ? h("details", {}, h("summary", {}, `${r.warnings.length} warning${r.warnings.length === 1 ? "" : "s"}`), h("ul", {}, r.warnings.map((w) => h("li", {}, w))))
        : null,
    ),
  );
}

$("import-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("import-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("archive", file, file.name);
  const button = e.target.querySelector("button");
  button.disabled = true;
  $("import-result").replaceChildren();
  try {
    setProgress(0, `${PHASES.upload} ${file.name}…`);
    const answer = await api.uploadWithProgress(paths.import(projectId), form, {
      onProgress: (sent, total) => setProgress(0.3 * (sent / total), `${PHASES.upload} ${file.name}: ${Math.round((100 * sent) / total)} %`),
    });
    // A job to follow (the server checks and stores in the background), or the result itself.
    if (answer && answer.kind && answer.status) {
      const watch = watchJob(api, answer, (job) => setProgress(0.3 + 0.7 * progressFraction(job), importPhase(job)));
      const final = await watch.done;
      if (final.status !== "succeeded") {
        setProgress(1, `Import ${final.status}.`);
        showImportFailure(final.result?.error?.detail ?? final.message);
        return;
      }
      showImportResult(final.result);
    } else {
      showImportResult(answer);
    }
    setProgress(1, "Done.");
    e.target.reset();
    loadAudit({ reset: true });
    toast("Dataset imported.");
  } catch (err) {
    setProgress(1, "Import failed.");
    showImportFailure(err instanceof ApiError ? err.detail : err.message);
  } finally {
    button.disabled = false;
  }
});

// --- audit log ------------------------------------------------------------------------------------------

for (const [value, label] of AUDIT_ACTIONS) $("audit-action").append(h("option", { value }, label));
let auditNext = null;
let auditSeq = 0;

async function loadAudit({ reset = false } = {}) {
  const seq = ++auditSeq;
  const action = $("audit-action").value;
  const query = reset || !auditNext ? { limit: 50, action } : Object.fromEntries(new URL(auditNext, location.origin).searchParams);
  const page = await api.get(paths.audit(projectId), { query });
  if (seq !== auditSeq) return;
  const rows = (page.results ?? page).map((ev) =>
    h(
      "tr",
      { "data-action": ev.action },
      h("td", { class: "nowrap" }, fmtDate(ev.created_at)),
      h("td", {}, ev.actor ?? "—"),
      h("td", {}, describeAudit(ev)),
    ),
  );
  const body = $("audit-rows");
  if (reset || !auditNext) body.replaceChildren(...rows);
  else body.append(...rows);
  if (!body.children.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "Nothing recorded yet.")));
  auditNext = page.next ?? null;
  $("audit-more").hidden = !auditNext;
}

$("audit-action").addEventListener("change", () => loadAudit({ reset: true }));
$("audit-more").addEventListener("click", () => loadAudit());

loadMembers().catch(memberError);
loadAudit({ reset: true }).catch((err) => $("audit-rows").replaceChildren(h("tr", {}, h("td", { colspan: 3, class: "error" }, err.message))));
