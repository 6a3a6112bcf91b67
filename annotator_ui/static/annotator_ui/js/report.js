// Structured reports in the browser: a live preview of the canonical sentence while the clinician
// fills the form. A port of `render` in server/studio/reports.py (the server stays the authority:
// it validates and renders again on save). DOM-free.
//
// Template: {fields: [{name, type: enum|multi|integer|text, label, choices: [{value, text}],
//            exclusive, joiner, min, max, required}], pattern: {alternatives: [{when, text, required, one_of}]}}

export class ReportError extends Error {
  /** @param {string|Object<string,string>} detail  message or {field: message} */
  constructor(detail) {
    super(typeof detail === "string" ? detail : Object.entries(detail).map(([k, v]) => `${k}: ${v}`).join("; "));
    this.name = "ReportError";
    this.detail = detail;
  }
}

const PLACEHOLDER = /\{([a-z_][a-z0-9_]*)\}/g;

const isEmpty = (v) => v === null || v === undefined || v === "" || (Array.isArray(v) && v.length === 0);

function field(template, name) {
  const f = template.fields.find((x) => x.name === name);
  if (!f) throw new ReportError(`unknown field ${name}`);
  return f;
}

function choiceText(f, value) {
  const c = (f.choices ?? []).find((x) => x.value === value);
  if (!c) throw new ReportError({ [f.name]: `${JSON.stringify(value)} is not one of ${(f.choices ?? []).map((x) => x.value).join(", ")}` });
  return c.text ?? c.value;
}

/** Validate and canonicalize values (choice order for multi, numbers for integer); empty values are dropped. */
export function normalizeFields(template, fields) {
  const known = new Set(template.fields.map((f) => f.name));
  for (const name of Object.keys(fields)) if (!known.has(name)) throw new ReportError({ [name]: "unknown field" });
  const out = {};
  for (const f of template.fields) {
    let value = fields[f.name];
    if (isEmpty(value)) continue;
    if (f.type === "enum") {
      choiceText(f, value);
      out[f.name] = value;
    } else if (f.type === "multi") {
      if (typeof value === "string") value = [value];
      value.forEach((v) => choiceText(f, v));
      const chosen = f.choices.map((c) => c.value).filter((v) => value.includes(v));
      const exclusive = (f.exclusive ?? []).filter((v) => chosen.includes(v));
      if (chosen.length > 1 && exclusive.length) {
        throw new ReportError({ [f.name]: `${exclusive.join(", ")} cannot be combined with other values` });
      }
      out[f.name] = chosen;
    } else if (f.type === "integer") {
      const n = typeof value === "number" ? value : Number(String(value).trim());
      if (!Number.isInteger(n)) throw new ReportError({ [f.name]: "expected an integer" });
      if ((f.min != null && n < f.min) || (f.max != null && n > f.max)) {
        throw new ReportError({ [f.name]: `must be between ${f.min} and ${f.max}` });
      }
      out[f.name] = n;
    } else if (f.type === "text") {
      const text = String(value).split(/\s+/).filter(Boolean).join(" ");
      if (text) out[f.name] = text;
    } else {
      throw new Error(`field ${f.name} has unknown type ${f.type}`);
    }
  }
  return out;
}

function whenMatches(when, fields) {
  return Object.entries(when ?? {}).every(([name, expected]) => {
    const actual = fields[name];
    if (Array.isArray(expected)) return JSON.stringify(actual ?? []) === JSON.stringify(expected);
    return actual === expected;
  });
}

function segments(text) {
  const out = [];
  let pos = 0;
  for (const m of text.matchAll(/\[([^[\]]*)\]/g)) {
    if (m.index > pos) out.push([false, text.slice(pos, m.index)]);
    out.push([true, m[1]]);
    pos = m.index + m[0].length;
  }
  if (pos < text.length) out.push([false, text.slice(pos)]);
  return out;
}

function formatValue(f, value) {
  if (f.type === "enum") return choiceText(f, value);
  if (f.type === "multi") return value.map((v) => choiceText(f, v)).join(f.joiner ?? " ");
  return String(value);
}

/** Fields the alternative uses: its placeholders and its `when` keys. */
function usedFields(alt) {
  return new Set([...[...alt.text.matchAll(PLACEHOLDER)].map((m) => m[1]), ...Object.keys(alt.when ?? {})]);
}

/**
 * Validate `fields` and return {fields, text}: the canonical fields (those the chosen sentence
 * form uses) and the rendered sentence. Throws ReportError with a message saying what to fix.
 */
export function renderReport(template, fields) {
  let values = normalizeFields(template, fields);
  for (const f of template.fields) {
    if (f.required && isEmpty(values[f.name])) throw new ReportError({ [f.name]: "this field is required" });
  }
  const alt = (template.pattern?.alternatives ?? []).find((a) => whenMatches(a.when, values));
  if (!alt) throw new ReportError("no sentence form of this template fits these fields");
  const used = usedFields(alt);
  values = Object.fromEntries(Object.entries(values).filter(([k]) => used.has(k)));
  const missing = (alt.required ?? []).filter((n) => isEmpty(values[n]));
  if (missing.length) throw new ReportError(Object.fromEntries(missing.map((n) => [n, "required for this kind of report"])));
  for (const group of alt.one_of ?? []) {
    const present = group.filter((n) => !isEmpty(values[n]));
    if (present.length !== 1) throw new ReportError(`exactly one of ${group.join(", ")} must be given`);
  }
  let text = "";
  for (const [optional, seg] of segments(alt.text)) {
    const names = [...seg.matchAll(PLACEHOLDER)].map((m) => m[1]);
    if (optional && names.some((n) => isEmpty(values[n]))) continue;
    const absent = names.filter((n) => isEmpty(values[n]));
    if (absent.length) throw new ReportError(Object.fromEntries(absent.map((n) => [n, "required for this kind of report"])));
    text += seg.replace(PLACEHOLDER, (_, n) => formatValue(field(template, n), values[n]));
  }
  return { fields: values, text };
}

/**
 * Which fields matter for the current values: those of the sentence form the values select
 * (e.g. the zones are irrelevant when the report says "no infection"). Used to grey out inputs.
 */
export function relevantFields(template, fields) {
  let values;
  try {
    values = normalizeFields(template, fields);
  } catch {
    values = {};
  }
  const alt = (template.pattern?.alternatives ?? []).find((a) => whenMatches(a.when, values));
  if (!alt) return new Set(template.fields.map((f) => f.name));
  return usedFields(alt);
}

/** The label a field shows in the form (its `label`, else its name in words). */
export function fieldLabel(template, name) {
  const f = template.fields.find((x) => x.name === name);
  return f?.label ?? name.replaceAll("_", " ");
}

function withLabels(template, text) {
  let out = String(text);
  for (const f of template.fields) out = out.replace(new RegExp(`\\b${f.name}\\b`, "g"), fieldLabel(template, f.name));
  return out;
}

/**
 * What is wrong with a report, in the words of the form: one entry per problem, `field` set when the
 * problem belongs to one field, `text` naming fields by their visible labels ("Left lung: required
 * for this kind of report").
 * @param {Error} err  a ReportError from renderReport (other errors give one generic entry)
 * @returns {{field: string|null, label: string|null, text: string}[]}
 */
export function reportProblems(template, err) {
  const detail = err?.detail ?? err?.message ?? String(err);
  if (detail && typeof detail === "object" && !Array.isArray(detail)) {
    return Object.entries(detail).map(([name, message]) => {
      const known = template.fields.some((f) => f.name === name);
      const label = known ? fieldLabel(template, name) : null;
      return { field: known ? name : null, label, text: `${label ?? name}: ${withLabels(template, message)}` };
    });
  }
  const text = withLabels(template, detail);
  return [{ field: null, label: null, text: text.charAt(0).toUpperCase() + text.slice(1) }];
}
