// The structured report form of a project's template (the case editor and the upload form share it):
// builds the inputs, reads and fills values, greys out fields the chosen sentence form does not use,
// previews the canonical sentence, and shows what is wrong in the form's own words (the fields'
// visible labels) with each problem next to its field. DOM; the rules are report.js.

import { h } from "./dom.js";
import { fieldLabel, relevantFields, renderReport, reportProblems } from "./report.js";

export class ReportForm {
  /** {fields, text} of the last valid state, else null. */
  rendered = null;
  /** Whether the user edited the form (validation messages wait until then, or until `validate`). */
  touched = false;

  #template;
  #form;
  #sentence;
  #errors;
  #idPrefix;
  #fallbackText = "";

  /**
   * @param {{template: {fields: object[], pattern: object}, form: HTMLFormElement,
   *          sentence?: HTMLElement, errors?: HTMLElement, idPrefix?: string,
   *          onChange?: (form: ReportForm) => void}} options
   */
  constructor({ template, form, sentence = null, errors = null, idPrefix = "f", onChange = () => {} }) {
    this.#template = template;
    this.#form = form;
    this.#sentence = sentence;
    this.#errors = errors;
    this.#idPrefix = idPrefix;
    this.#build();
    const changed = () => {
      this.touched = true;
      this.update();
      onChange(this);
    };
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    form.addEventListener("submit", (e) => e.preventDefault());
    this.update();
  }

  get template() {
    return this.#template;
  }

  #build() {
    const p = this.#idPrefix;
    this.#form.replaceChildren(
      ...this.#template.fields.map((f) => {
        const id = `${p}-${f.name}`;
        const label = fieldLabel(this.#template, f.name);
        const hint = h("p", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
        if (f.type === "enum" || f.type === "multi") {
          const type = f.type === "enum" ? "radio" : "checkbox";
          return h(
            "fieldset",
            { "data-field": f.name, "aria-describedby": `${id}-error` },
            h("legend", {}, label, f.required ? h("span", { "aria-hidden": "true" }, " *") : ""),
            h(
              "div",
              { class: "choices" },
              f.choices.map((c, i) =>
                h(
                  "label",
                  {},
                  h("input", { type, name: f.name, value: c.value, id: `${id}-${i}`, required: f.required && i === 0 }),
                  c.text ?? c.value,
                ),
              ),
            ),
            hint,
          );
        }
        const input =
          f.type === "integer"
            ? h("input", { type: "number", id, name: f.name, min: f.min, max: f.max, step: 1, "aria-describedby": `${id}-error` })
            : h("textarea", { id, name: f.name, maxlength: f.max_length ?? 4000, "aria-describedby": `${id}-error` });
        return h("fieldset", { "data-field": f.name }, h("legend", {}, h("label", { for: id }, label)), input, hint);
      }),
    );
  }

  /** The form's values as template fields. */
  read() {
    const out = {};
    for (const f of this.#template.fields) {
      if (f.type === "enum") out[f.name] = this.#form.querySelector(`input[name="${f.name}"]:checked`)?.value ?? null;
      else if (f.type === "multi") {
        out[f.name] = [...this.#form.querySelectorAll(`input[name="${f.name}"]:checked`)].map((i) => i.value);
      } else out[f.name] = this.#form.elements[f.name].value;
    }
    return out;
  }

  /**
   * Fill the form. `fallbackText`: a stored sentence the template cannot parse (imported free text);
   * a single-text-field template shows it in its field, any other shows it as the sentence.
   */
  fill(fields, { fallbackText = "" } = {}) {
    this.#fallbackText = !Object.keys(fields ?? {}).length ? fallbackText : "";
    for (const f of this.#template.fields) {
      const v = fields?.[f.name];
      if (f.type === "enum" || f.type === "multi") {
        const chosen = new Set(Array.isArray(v) ? v : v ? [v] : []);
        for (const box of this.#form.querySelectorAll(`input[name="${f.name}"]`)) box.checked = chosen.has(box.value);
      } else {
        this.#form.elements[f.name].value = v ?? "";
      }
    }
    const fields1 = this.#template.fields;
    if (this.#fallbackText && fields1.length === 1 && fields1[0].type === "text") {
      this.#form.elements[fields1[0].name].value = this.#fallbackText;
      this.#fallbackText = "";
    }
    this.update();
  }

  reset() {
    this.touched = false;
    this.fill({});
  }

  /** Whether nothing is filled in (an upload without a report). */
  isBlank() {
    return Object.values(this.read()).every((v) => v === null || v === "" || (Array.isArray(v) && !v.length));
  }

  /** Re-render the preview and, once touched, the problems. */
  update() {
    const fields = this.read();
    const relevant = relevantFields(this.#template, fields);
    for (const fs of this.#form.querySelectorAll("fieldset")) fs.disabled = !relevant.has(fs.dataset.field);
    let problems = [];
    try {
      this.rendered = renderReport(this.#template, fields);
      if (this.#sentence) this.#sentence.textContent = this.rendered.text;
    } catch (err) {
      this.rendered = null;
      if (this.#sentence) this.#sentence.textContent = this.#fallbackText;
      problems = reportProblems(this.#template, err);
    }
    this.#showProblems(this.touched ? problems : []);
    return this.rendered;
  }

  /** Validate now (on save): show every problem and move focus to the first field that has one. */
  validate() {
    this.touched = true;
    const ok = this.update();
    if (!ok) {
      const first = this.#form.querySelector('fieldset[aria-invalid="true"] input, fieldset[aria-invalid="true"] textarea');
      first?.focus();
    }
    return ok;
  }

  #showProblems(problems) {
    for (const fs of this.#form.querySelectorAll("fieldset")) {
      fs.removeAttribute("aria-invalid");
      const hint = fs.querySelector(".field-error");
      if (hint) hint.textContent = "";
    }
    for (const p of problems) {
      if (!p.field) continue;
      const fs = this.#form.querySelector(`fieldset[data-field="${p.field}"]`);
      if (!fs) continue;
      fs.setAttribute("aria-invalid", "true");
      fs.querySelector(".field-error").textContent = p.text;
    }
    if (this.#errors) this.#errors.replaceChildren(...problems.map((p) => h("li", {}, p.text)));
  }

  /** Clear the messages (e.g. after a successful save). */
  clearProblems() {
    this.#showProblems([]);
  }
}
