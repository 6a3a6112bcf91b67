// The audit log in words: one sentence per event ("dr.lee accepted a mask of case 12"), from the
// event's action and data. DOM-free.

const who = (e) => e.actor ?? "someone";
const caseRef = (d) => (d.case != null ? ` of case ${d.case}` : "");

const SENTENCES = {
  "project.created": (e) => `${who(e)} created the project`,
  "project.deleted": (e) => `${who(e)} deleted the project`,
  "member.set": (e, d) => `${who(e)} made ${d.member ?? "a user"} ${d.role ?? "a member"}`,
  "member.removed": (e, d) => `${who(e)} removed ${d.member ?? "a user"} from the project`,
  "cases.uploaded": (e, d) => `${who(e)} uploaded ${d.count ?? "some"} case${d.count === 1 ? "" : "s"}${d.reports ? ` (${d.reports} with a report)` : ""}`,
  "case.deleted": (e, d) => `${who(e)} deleted case ${d.name ?? e.target_id}`,
  "mask.accepted": (e, d) => `${who(e)} accepted a mask${caseRef(d)}${d.without_report ? " without a report (confirmed)" : ""}`,
  "mask.rejected": (e, d) => `${who(e)} rejected the proposal${caseRef(d)}${d.reason ? `: “${d.reason}”` : ""}`,
  "mask.restored": (e, d) => `${who(e)} restored version ${d.from_version ?? "?"} as version ${d.version ?? "?"}${caseRef(d)}`,
  "dataset.imported": (e, d) => `${who(e)} imported ${d.cases ?? "?"} cases (${d.labeled ?? 0} with masks, ${d.reports ?? 0} with reports)`,
  "dataset.exported": (e, d) => `${who(e)} exported the dataset as ${d.format ?? "?"}`,
  "model.activated": (e, d) => `${who(e)} activated model v${d.number ?? e.target_id}`,
  "model.retired": (e, d) => `${who(e)} retired model v${d.number ?? e.target_id}`,
  "model.kept_candidate": (e, d) => `model v${d.number ?? e.target_id} stayed a candidate (${d.reason ?? "no reason recorded"})`,
  "training.policy": (e, d) =>
    `${who(e)} set the promotion policy to ${d.promotion ?? "?"}${d.min_dice != null ? `, Dice floor ${d.min_dice}` : ""}${
      d.min_improvement != null ? `, margin ${d.min_improvement}` : ""
    }`,
  "validation_set.frozen": (e, d) => `the validation set was frozen with ${d.cases ?? "?"} cases (version 1)`,
  "validation_set.versioned": (e, d) =>
    `validation set version ${d.version ?? "?"}: ${(d.added ?? []).length} cases added, ${(d.removed ?? []).length} removed`,
  "job.cancelled": (e, d) => `${who(e)} cancelled ${d.kind ?? "a"} job ${e.target_id}`,
};

/** One sentence for an audit event ({actor, action, target_type, target_id, data}). */
export function describeAudit(event) {
  const data = event.data ?? {};
  const sentence = SENTENCES[event.action];
  if (sentence) return sentence(event, data);
  const target = event.target_type ? ` ${event.target_type} ${event.target_id}` : "";
  return `${who(event)}: ${event.action}${target}`;
}

/** The actions the log can be filtered by, with a label each. */
export const AUDIT_ACTIONS = Object.freeze([
  ["mask.accepted", "Masks accepted"],
  ["mask.rejected", "Proposals rejected"],
  ["mask.restored", "Versions restored"],
  ["member.set", "Roles set"],
  ["member.removed", "Members removed"],
  ["cases.uploaded", "Uploads"],
  ["dataset.imported", "Imports"],
  ["dataset.exported", "Exports"],
  ["model.activated", "Models activated"],
]);
