// Export page: pick a format and a split; the browser downloads the streamed archive from the API.

import { queryString } from "../api.js";
import { api, h, pageConfig, toast } from "../dom.js";
import { paths } from "../endpoints.js";

const config = pageConfig();
const projectId = config.project.id;
const $ = (id) => document.getElementById(id);

const FORMATS = [
  { value: "lvit", label: "LViT folders (img/, labelcol/, a reports file per split), zip" },
  { value: "png", label: "Images and PNG masks, zip" },
  { value: "coco", label: "COCO JSON with RLE masks" },
  { value: "dicom-seg", label: "DICOM images with DICOM SEG masks, zip" },
  { value: "nifti", label: "NIfTI image and mask volumes (.nii.gz) with a manifest, zip" },
  { value: "metrics-json", label: "Model metrics per version (JSON)" },
  { value: "metrics-csv", label: "Model metrics per version (CSV)" },
];
for (const f of FORMATS) $("export-format").append(h("option", { value: f.value }, f.label));

const REPORTS_FILE = {
  xlsx: "<Split>_Folder/<Split>_text.xlsx",
  csv: "<Split>_Folder/<Split>_text.csv (UTF-8)",
  imported: "<Split>_Folder/<Split>_text.xlsx or .csv, whichever the split's cases were imported with (.csv for uploaded ones)",
};
const layout = (text) =>
  "Each split becomes <Split>_Folder/img/ (the images), <Split>_Folder/labelcol/ (the accepted masks, all named one way: " +
  "like the split's imported masks, else <image stem>.png) and " +
  `${REPORTS_FILE[text]} with the columns Image (the mask's file name) and Description.`;

function update() {
  const format = $("export-format").value;
  const split = $("export-split").value;
  const accepted = $("export-accepted").checked;
  const text = $("export-text").value;
  const metrics = format.startsWith("metrics-");
  $("export-split").disabled = metrics;
  $("export-accepted").disabled = metrics;
  for (const el of document.querySelectorAll(".lvit-only")) el.hidden = format !== "lvit";
  $("export-layout").textContent = format === "lvit" ? layout(text) : "";
  $("export-link").href = metrics
    ? paths.metrics(projectId) + queryString({ format: format.slice("metrics-".length) })
    : paths.export(projectId) + queryString({ format, split, accepted: accepted ? 1 : "", text: format === "lvit" ? text : "" });
  $("export-link").textContent = metrics ? "Download metrics" : "Download dataset";
}
$("export-form").addEventListener("change", update);
update();

const STATES = ["unlabeled", "proposed", "in_review", "labeled"];
const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

async function summary() {
  const dl = $("export-summary");
  try {
    const project = await api.get(paths.project(projectId));
    const items = [["Report template", project.template]];
    let total = 0;
    let labeled = 0;
    for (const [split, counts] of Object.entries(project.stats ?? {})) {
      const parts = STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s.replace("_", " ")}`);
      items.push([`${cap(split)} split`, parts.join(", ") || "empty"]);
      for (const n of Object.values(counts)) total += n;
      labeled += counts.labeled ?? 0;
    }
    items.push(["All cases", total], ["With an accepted mask", labeled]);
    dl.replaceChildren(...items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  } catch (err) {
    dl.replaceChildren(h("dt", {}, "Error"), h("dd", {}, err.message));
  }
}
summary();

// PACS write-back: store accepted masks of PACS cases as DICOM SEG, now or on every accept (admins).
async function storeAll() {
  const button = $("pacs-store");
  button.disabled = true;
  $("pacs-store-result").textContent = "Storing in the PACS…";
  try {
    let job = await api.post(paths.pacsStore(projectId), {});
    while (job.status === "pending" || job.status === "running") {
      const { done, total } = job.progress ?? {};
      if (total) $("pacs-store-result").textContent = `Storing in the PACS… ${done} of ${total}`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      job = await api.get(paths.job(job.id));
    }
    if (job.status !== "succeeded") throw new Error(job.message || `the store job ${job.status}`);
    const failed = job.result.failed.map((f) => `case ${f.case}: ${f.detail}`);
    $("pacs-store-result").textContent =
      `Stored ${job.result.stored.length} segmentation(s).` + (failed.length ? ` Failed: ${failed.join("; ")}` : "");
  } catch (err) {
    $("pacs-store-result").textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

async function pacsSettings() {
  if (!$("pacs-store")) return;
  $("pacs-store").addEventListener("click", storeAll);
  const toggle = $("pacs-on-accept");
  if (!toggle) return;
  const project = await api.get(paths.project(projectId));
  toggle.checked = Boolean(project.pacs_store_on_accept);
  toggle.addEventListener("change", async () => {
    try {
      await api.patch(paths.project(projectId), { pacs_store_on_accept: toggle.checked });
      toast(toggle.checked ? "Accepted masks will be stored in the PACS" : "Accepted masks stay here");
    } catch (err) {
      toggle.checked = !toggle.checked;
      toast(err.message, { error: true });
    }
  });
}
pacsSettings();
