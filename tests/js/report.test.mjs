import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  fieldLabel,
  relevantFields,
  renderReport,
  ReportError,
  reportProblems,
} from "../../annotator_ui/static/annotator_ui/js/report.js";

// The lung-infection template as seeded by the server (server/studio/reports.py, LUNG_INFECTION).
const ZONES = ["upper", "middle", "lower", "all"].map((v) => ({ value: v, text: v }));
const LUNG = {
  fields: [
    {
      name: "laterality",
      type: "enum",
      required: true,
      choices: [
        { value: "none", text: "No" },
        { value: "unilateral", text: "Unilateral" },
        { value: "bilateral", text: "Bilateral" },
      ],
    },
    {
      name: "areas",
      type: "enum",
      choices: ["one", "two", "three", "four", "multiple"].map((v) => ({
        value: v,
        text: `${v} infected area${v === "one" ? "" : "s"}`,
      })),
    },
    { name: "left_zones", type: "multi", choices: ZONES, exclusive: ["all"] },
    { name: "right_zones", type: "multi", choices: ZONES, exclusive: ["all"] },
  ],
  pattern: {
    alternatives: [
      { when: { laterality: "none" }, text: "No pulmonary infection." },
      {
        when: { laterality: "bilateral" },
        text: "Bilateral pulmonary infection, {areas}, {left_zones} left lung and {right_zones} right lung.",
        required: ["areas", "left_zones", "right_zones"],
      },
      {
        when: { laterality: "unilateral" },
        text: "Unilateral pulmonary infection, {areas}, [{left_zones} left lung][{right_zones} right lung].",
        required: ["areas"],
        one_of: [["left_zones", "right_zones"]],
      },
    ],
  },
};

const ESO = {
  fields: [
    { name: "tumour", type: "enum", required: true, choices: [{ value: "absent", text: "absent" }, { value: "present", text: "present" }] },
    {
      name: "segments",
      type: "multi",
      joiner: " and ",
      choices: [
        { value: "cervical", text: "cervical" },
        { value: "upper_thoracic", text: "upper thoracic" },
      ],
    },
    { name: "length_mm", type: "integer", min: 1, max: 400 },
  ],
  pattern: {
    alternatives: [
      { when: { tumour: "absent" }, text: "No esophageal tumour." },
      { when: { tumour: "present" }, text: "Esophageal tumour in the {segments} esophagus[, about {length_mm} mm long].", required: ["segments"] },
    ],
  },
};

describe("renderReport", () => {
  it("renders the LViT-style sentence (the paper's example)", () => {
    const { text, fields } = renderReport(LUNG, {
      laterality: "bilateral",
      areas: "two",
      left_zones: ["upper"],
      right_zones: ["lower"],
    });
    assert.equal(text, "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.");
    assert.deepEqual(fields.left_zones, ["upper"]);
  });

  it("orders multi choices canonically and drops fields the sentence does not use", () => {
    const { text, fields } = renderReport(LUNG, { laterality: "none", left_zones: ["lower", "upper"] });
    assert.equal(text, "No pulmonary infection.");
    assert.deepEqual(fields, { laterality: "none" });
    const uni = renderReport(LUNG, { laterality: "unilateral", areas: "one", right_zones: ["lower", "upper"] });
    assert.equal(uni.text, "Unilateral pulmonary infection, one infected area, upper lower right lung.");
  });

  it("optional segments and integers", () => {
    assert.equal(
      renderReport(ESO, { tumour: "present", segments: ["upper_thoracic", "cervical"], length_mm: "42" }).text,
      "Esophageal tumour in the cervical and upper thoracic esophagus, about 42 mm long.",
    );
    assert.equal(renderReport(ESO, { tumour: "present", segments: ["cervical"] }).text, "Esophageal tumour in the cervical esophagus.");
  });

  it("says what to fix", () => {
    assert.throws(() => renderReport(LUNG, {}), (e) => e instanceof ReportError && "laterality" in e.detail);
    assert.throws(() => renderReport(LUNG, { laterality: "bilateral", areas: "two", left_zones: ["upper"] }), /right_zones/);
    assert.throws(() => renderReport(LUNG, { laterality: "unilateral", areas: "one" }), /exactly one of/);
    assert.throws(() => renderReport(LUNG, { laterality: "bilateral", areas: "two", left_zones: ["all", "upper"], right_zones: ["all"] }), /cannot be combined/);
    assert.throws(() => renderReport(ESO, { tumour: "present", segments: ["cervical"], length_mm: 999 }), /between 1 and 400/);
    assert.throws(() => renderReport(ESO, { tumour: "present", segments: ["cervical"], length_mm: "4.5" }), /integer/);
  });

  it("relevantFields follows the selected sentence form", () => {
    assert.deepEqual([...relevantFields(LUNG, { laterality: "none" })], ["laterality"]);
    assert.equal(relevantFields(LUNG, {}).size, 4);
  });
});

describe("validation messages in the form's words", () => {
  const LABELS = { laterality: "Infection", areas: "Infected areas", left_zones: "Left lung", right_zones: "Right lung" };
  const labelled = { ...LUNG, fields: LUNG.fields.map((f) => ({ ...f, label: LABELS[f.name] })) };
  const errorOf = (fields) => {
    try {
      renderReport(labelled, fields);
    } catch (e) {
      return e;
    }
    throw new Error("expected an invalid report");
  };

  it("names fields by their visible labels", () => {
    assert.equal(fieldLabel(labelled, "left_zones"), "Left lung");
    assert.equal(fieldLabel(LUNG, "left_zones"), "left zones", "no label: the name in words");
    assert.deepEqual(reportProblems(labelled, errorOf({ laterality: "bilateral", areas: "two", left_zones: ["upper"] })), [
      { field: "right_zones", label: "Right lung", text: "Right lung: required for this kind of report" },
    ]);
    assert.deepEqual(reportProblems(labelled, errorOf({ laterality: "unilateral", areas: "one" })), [
      { field: null, label: null, text: "Exactly one of Left lung, Right lung must be given" },
    ]);
    assert.equal(reportProblems(labelled, errorOf({}))[0].text, "Infection: this field is required");
  });
});
