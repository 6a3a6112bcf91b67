import assert from "node:assert/strict";
import { test } from "node:test";

import {
  formatDicomDate,
  formatPersonName,
  importRequest,
  instanceChoice,
  searchQuery,
  sourceLabel,
} from "../../annotator_ui/static/annotator_ui/js/pacs.js";

test("search query leaves out empty fields and upper-cases the modality", () => {
  assert.deepEqual(searchQuery({ patientId: " P-1 ", modality: "ct", dateFrom: "2024-01-01" }), {
    patient_id: "P-1",
    modality: "CT",
    date_from: "2024-01-01",
  });
  assert.deepEqual(searchQuery({}), {});
});

test("dates and person names", () => {
  assert.equal(formatDicomDate("20240315"), "2024-03-15");
  assert.equal(formatDicomDate(""), "");
  assert.equal(formatPersonName("Doe^Jane"), "Doe, Jane");
  assert.equal(formatPersonName("Anonymous"), "Anonymous");
});

const series = [
  {
    series_uid: "1.2",
    instances: [
      { sop_uid: "1.2.1", rows: 10, columns: 20, frames: 1, unusable_reason: "", imported_case: null },
      { sop_uid: "1.2.2", rows: 10, columns: 20, frames: 3, unusable_reason: "", imported_case: null },
      { sop_uid: "1.2.3", rows: null, columns: null, frames: 1, unusable_reason: "RT Plan Storage holds no image pixels", imported_case: null },
      { sop_uid: "1.2.4", rows: 10, columns: 20, frames: 1, unusable_reason: "", imported_case: 7 },
    ],
  },
];

test("each instance says what can be done with it", () => {
  const [plain, cine, plan, done] = series[0].instances;
  assert.deepEqual(instanceChoice(plain), { kind: "import", text: "20×10" });
  assert.equal(instanceChoice(cine).text, "20×10, 3 frames, frame 2 becomes the case");
  assert.deepEqual(instanceChoice(plan), { kind: "unusable", text: "RT Plan Storage holds no image pixels" });
  assert.deepEqual(instanceChoice(done), { kind: "imported", text: "already case 7" });
});

test("import request: the study when all importable are chosen, else the chosen instances", () => {
  assert.deepEqual(importRequest("1", series, new Set(["1.2.1", "1.2.2"])), { study_uid: "1" });
  assert.deepEqual(importRequest("1", series, new Set(["1.2.2", "1.2.3"]), { split: "val" }), {
    study_uid: "1",
    sop_uids: ["1.2.2"],
    split: "val",
  });
  assert.equal(importRequest("1", series, new Set()), null);
  assert.equal(importRequest("1", series, new Set(["1.2.4"])), null); // already imported: nothing to send
});

test("source label for PACS, LViT import and upload cases", () => {
  assert.equal(
    sourceLabel({ kind: "pacs", pacs: "Orthanc", modality: "CT", frame: 1, frames: 3, segs: [{ status: "stored" }] }),
    "from PACS Orthanc (CT, frame 2 of 3, 1 SEG stored back)",
  );
  assert.equal(sourceLabel({ kind: "pacs", pacs: "Orthanc", modality: "DX", frame: null, frames: 1 }), "from PACS Orthanc (DX)");
  assert.equal(sourceLabel({ kind: "lvit_import" }), "from an LViT dataset import");
  assert.equal(sourceLabel({ kind: "upload", original_name: "a.png" }), "uploaded as a.png");
});
