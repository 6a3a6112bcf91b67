// PACS page logic without the DOM: search parameters, what each instance offers, the import request, labels.

/** Query parameters for a study search from the form's values (empty fields left out, dates as YYYY-MM-DD). */
export function searchQuery({ patientId = "", accession = "", dateFrom = "", dateTo = "", modality = "" } = {}) {
  const query = {};
  if (patientId.trim()) query.patient_id = patientId.trim();
  if (accession.trim()) query.accession = accession.trim();
  if (dateFrom) query.date_from = dateFrom;
  if (dateTo) query.date_to = dateTo;
  if (modality.trim()) query.modality = modality.trim().toUpperCase();
  return query;
}

/** "20240315" → "2024-03-15" (anything else as it is). */
export function formatDicomDate(value) {
  return /^\d{8}$/.test(value ?? "") ? `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6)}` : value ?? "";
}

/** "Doe^Jane" → "Doe, Jane" (DICOM person names are family^given^middle^prefix^suffix). */
export function formatPersonName(value) {
  const [family = "", given = ""] = String(value ?? "").split("^");
  return given ? `${family}, ${given}` : family;
}

/**
 * What the page may do with one instance: "import" (selectable), "imported" (already case N) or "unusable"
 * (with the server's reason); multi-frame images say which frame becomes the case.
 */
export function instanceChoice(instance) {
  if (instance.imported_case) return { kind: "imported", text: `already case ${instance.imported_case}` };
  if (instance.unusable_reason) return { kind: "unusable", text: instance.unusable_reason };
  const size = instance.rows && instance.columns ? `${instance.columns}×${instance.rows}` : "";
  const frames = instance.frames > 1 ? `${instance.frames} frames, frame ${Math.floor(instance.frames / 2) + 1} becomes the case` : "";
  return { kind: "import", text: [size, frames].filter(Boolean).join(", ") };
}

/**
 * The import request for a study: the whole study when every importable instance is selected, else the chosen
 * instances. Returns null when nothing is selected.
 */
export function importRequest(studyUid, series, selected, { split = "" } = {}) {
  const importable = series.flatMap((s) => s.instances.filter((i) => instanceChoice(i).kind === "import"));
  const chosen = importable.filter((i) => selected.has(i.sop_uid)).map((i) => i.sop_uid);
  if (chosen.length === 0) return null;
  const body = { study_uid: studyUid };
  if (chosen.length < importable.length) body.sop_uids = chosen;
  if (split) body.split = split;
  return body;
}

/** A line saying where a case came from (the case detail's `source`). */
export function sourceLabel(source) {
  if (!source) return "";
  if (source.kind === "pacs") {
    const frame = source.frames > 1 ? `, frame ${source.frame + 1} of ${source.frames}` : "";
    const segs = (source.segs ?? []).filter((s) => s.status === "stored").length;
    const stored = segs ? `, ${segs} SEG stored back` : "";
    return `from PACS ${source.pacs} (${source.modality || "DICOM"}${frame}${stored})`;
  }
  if (source.kind === "lvit_import") return "from an LViT dataset import";
  return source.original_name ? `uploaded as ${source.original_name}` : "uploaded";
}
