// Export page: pick a format and a split; the browser downloads the streamed archive from the API.

import { api, h, pageConfig } from "../dom.js";
import { paths, } from "../endpoints.js";
import { queryString } from "../api.js";

const config = pageConfig();
const projectId = config.project.id;
const $ = (id) => document.getElementById(id);

const FORMATS = [
  { value: "lvit", label: "LViT folders (img/, labelcol/, *_text.xlsx) — zip" },
  { value: "coco", label: "COCO JSON with RLE masks" },
  { value: "metrics-json", label: "Model metrics (JSON)" },
  { value: "metrics-csv", label: "Model metrics (CSV)" },
];
for (const f of FORMATS) $("export-format").append(h("option", { value: f.value }, f.label));

function update() {
  const format = $("export-format").value;
  const split = $("export-split").value;
  $("export-link").href = paths.export(projectId) + queryString({ format, split });
}
$("export-form").addEventListener("change", update);
update();

async function summary() {
  const dl = $("export-summary");
  try {
    const project = await api.get(paths.project(projectId));
    const items = [
      ["Cases", project.case_count],
      ["Labeled (accepted masks)", project.labeled_count],
      ["Report template", project.template],
    ];
    dl.replaceChildren(...items.filter(([, v]) => v != null).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  } catch (err) {
    dl.replaceChildren(h("dt", {}, "Error"), h("dd", {}, err.message));
  }
}
summary();
