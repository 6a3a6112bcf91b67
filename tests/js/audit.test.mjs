import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { describeAudit } from "../../annotator_ui/static/annotator_ui/js/audit.js";

describe("audit log in words", () => {
  it("names who did what to which case", () => {
    assert.equal(
      describeAudit({ actor: "dr.lee", action: "mask.accepted", data: { case: 12, without_report: true } }),
      "dr.lee accepted a mask of case 12 without a report (confirmed)",
    );
    assert.equal(
      describeAudit({ actor: "dr.lee", action: "member.set", data: { member: "dr.kim", role: "reviewer" } }),
      "dr.lee made dr.kim reviewer",
    );
    assert.equal(
      describeAudit({ actor: null, action: "dataset.imported", data: { cases: 40, labeled: 40, reports: 38 } }),
      "someone imported 40 cases (40 with masks, 38 with reports)",
    );
    assert.equal(
      describeAudit({ actor: "a", action: "mask.rejected", data: { case: 3, reason: "wrong side" } }),
      "a rejected the proposal of case 3: “wrong side”",
    );
  });

  it("says what the training loop decided", () => {
    assert.equal(
      describeAudit({ actor: null, action: "model.kept_candidate", data: { number: 2, reason: "not promoted: x" } }),
      "model v2 stayed a candidate (not promoted: x)",
    );
    assert.equal(
      describeAudit({ actor: "ana", action: "training.policy", data: { promotion: "auto_if_better", min_dice: 0.4 } }),
      "ana set the promotion policy to auto_if_better, Dice floor 0.4",
    );
    assert.equal(
      describeAudit({ actor: null, action: "validation_set.versioned", data: { version: 2, added: [5, 6], removed: [] } }),
      "validation set version 2: 2 cases added, 0 removed",
    );
    assert.equal(
      describeAudit({ actor: null, action: "validation_set.frozen", data: { cases: 4 } }),
      "the validation set was frozen with 4 cases (version 1)",
    );
  });

  it("falls back to the action for unknown events", () => {
    assert.equal(describeAudit({ actor: "a", action: "x.y", target_type: "Case", target_id: "4" }), "a: x.y Case 4");
  });
});
