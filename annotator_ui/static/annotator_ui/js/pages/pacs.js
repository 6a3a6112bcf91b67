// PACS page: search studies (QIDO-RS through the API), open one, pick images, import them into the project.

import { api, h, pageConfig, toast } from "../dom.js";
import { paths } from "../endpoints.js";
import { formatDicomDate, formatPersonName, importRequest, instanceChoice, searchQuery } from "../pacs.js";

const config = pageConfig();
const projectId = config.project.id;
const $ = (id) => document.getElementById(id);
let study = null; // {uid, series}
const selected = new Set();

function showError(err) {
  $("pacs-error").textContent = err ? err.message : "";
  $("pacs-error").hidden = !err;
}

async function search(event) {
  event?.preventDefault();
  showError(null);
  const query = searchQuery({
    patientId: $("pacs-patient").value,
    accession: $("pacs-accession").value,
    dateFrom: $("pacs-from").value,
    dateTo: $("pacs-to").value,
    modality: $("pacs-modality").value,
  });
  $("pacs-search-button").disabled = true;
  try {
    const studies = await api.get(paths.pacsStudies(projectId), { query });
    const rows = studies.map((s) =>
      h(
        "tr",
        { dataset: { study: s.study_uid } },
        h("td", {}, formatDicomDate(s.study_date)),
        h("td", {}, s.patient_id),
        h("td", {}, formatPersonName(s.patient_name)),
        h("td", {}, s.accession),
        h("td", {}, s.modalities.join(", ")),
        h("td", {}, s.description),
        h("td", {}, s.instances ?? ""),
        h("td", {}, h("button", { type: "button", class: "open-study", onclick: () => openStudy(s) }, "Open")),
      ),
    );
    $("pacs-studies").querySelector("tbody").replaceChildren(...rows);
    $("pacs-studies").hidden = rows.length === 0;
    $("pacs-empty").hidden = rows.length !== 0;
  } catch (err) {
    showError(err);
  } finally {
    $("pacs-search-button").disabled = false;
  }
}

async function openStudy(hit, { keepResult = false } = {}) {
  showError(null);
  if (!keepResult) $("pacs-result").replaceChildren();
  try {
    const series = await api.get(paths.pacsStudy(projectId, hit.study_uid));
    study = { uid: hit.study_uid, series, hit };
    selected.clear();
    for (const s of series) for (const i of s.instances) if (instanceChoice(i).kind === "import") selected.add(i.sop_uid);
    $("study-title").textContent = `${formatDicomDate(hit.study_date)} · ${hit.patient_id} · ${hit.description || hit.modalities.join(", ")}`;
    renderSeries();
    $("pacs-study").hidden = false;
  } catch (err) {
    showError(err);
  }
}

function renderSeries() {
  const blocks = study.series.map((s) =>
    h(
      "fieldset",
      { class: "series" },
      h("legend", {}, `Series ${s.number ?? "?"} · ${s.modality} · ${s.description || s.series_uid}`),
      h(
        "ul",
        { class: "plain" },
        s.instances.map((i) => {
          const choice = instanceChoice(i);
          const box = h("input", {
            type: "checkbox",
            value: i.sop_uid,
            checked: selected.has(i.sop_uid),
            disabled: choice.kind !== "import",
            onchange: (e) => (e.target.checked ? selected.add(i.sop_uid) : selected.delete(i.sop_uid)),
          });
          const note = choice.kind === "imported"
            ? h("a", { href: paths.casePage(projectId, i.imported_case) }, choice.text)
            : h("span", { class: choice.kind === "unusable" ? "muted" : "" }, choice.text);
          return h("li", { class: `instance ${choice.kind}` }, h("label", {}, box, ` Image ${i.number ?? "?"} `), note);
        }),
      ),
    ),
  );
  $("pacs-series").replaceChildren(...blocks);
}

async function runImport(event) {
  event.preventDefault();
  const body = importRequest(study.uid, study.series, selected, { split: $("pacs-split").value });
  if (!body) {
    toast("Select at least one image to import", { error: true });
    return;
  }
  $("pacs-import-button").disabled = true;
  $("pacs-result").replaceChildren(h("p", { class: "muted" }, "Retrieving from the PACS…"));
  try {
    const result = await api.post(paths.pacsImport(projectId), body);
    const items = result.cases.map((c) =>
      h(
        "li",
        {},
        h("a", { href: paths.casePage(projectId, c.id) }, c.name),
        c.frames > 1 ? ` (frame ${c.frame + 1} of ${c.frames})` : "",
      ),
    );
    const skipped = result.skipped.map((s) => h("li", { class: "muted" }, `${s.sop_uid}: ${s.reason}`));
    $("pacs-result").replaceChildren(
      h("p", { id: "pacs-imported" }, `Imported ${result.cases.length} case(s).`),
      h("ul", {}, items),
      skipped.length ? h("p", {}, "Skipped:") : "",
      skipped.length ? h("ul", {}, skipped) : "",
    );
    toast(`Imported ${result.cases.length} case(s)`);
    await openStudy(study.hit, { keepResult: true }); // the imported images now link to their cases
  } catch (err) {
    $("pacs-result").replaceChildren(h("p", { class: "banner error", role: "alert", id: "pacs-import-error" }, err.message));
  } finally {
    $("pacs-import-button").disabled = false;
  }
}

$("pacs-search").addEventListener("submit", search);
$("pacs-import").addEventListener("submit", runImport);
