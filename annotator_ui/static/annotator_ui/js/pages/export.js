// Export page: pick a format and a split; the browser downloads the streamed archive from the API.

import { queryString } from "../api.js";
import { api, h, pageConfig } from "../dom.js";
import { paths } from "../endpoints.js";

const config = pageConfig();
const projectId = config.project.id;
const $ = (id) => document.getElementById(id);

const FORMATS = [
  { value: "lvit", label: "LViT folders (img/, labelcol/, *_text.xlsx), zip" },
  { value: "png", label: "Images and PNG masks, zip" },
  { value: "coco", label: "COCO JSON with RLE masks" },
  { value: "metrics-json", label: "Model metrics per version (JSON)" },
  { value: "metrics-csv", label: "Model metrics per version (CSV)" },
];
for (const f of FORMATS) $("export-format").append(h("option", { value: f.value }, f.label));

function update() {
  const format = $("export-format").value;
  const split = $("export-split").value;
  const accepted = $("export-accepted").checked;
  const metrics = format.startsWith("metrics-");
  $("export-split").disabled = metrics;
  $("export-accepted").disabled = metrics;
  $("export-link").href = metrics
    ? paths.metrics(projectId) + queryString({ format: format.slice("metrics-".length) })
    : paths.export(projectId) + queryString({ format, split, accepted: accepted ? 1 : "" });
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
