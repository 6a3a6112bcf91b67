import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  activeDiceOnSameCases,
  confirmText,
  diceLabels,
  effortText,
  estimateSeconds,
  estimateText,
  formDefaults,
  phaseText,
  progressDice,
  promotionText,
  settingsText,
  validationSetText,
} from "../../annotator_ui/static/annotator_ui/js/training.js";

const estimate = {
  seconds: 400,
  seconds_per_image_epoch: 2.5,
  device: "cpu",
  img_size: 112,
  images: 32,
  epochs: 5,
  basis: "measured on this worker",
};

describe("training form", () => {
  it("takes the server's device-dependent defaults, else the fallback", () => {
    assert.deepEqual(formDefaults({ defaults: { img_size: 112, epochs: 3, device: "cpu" } }), {
      img_size: 112,
      epochs: 3,
      mode: "semi_supervised",
      device: "cpu",
    });
    assert.deepEqual(formDefaults(null), { img_size: 224, epochs: 5, mode: "semi_supervised", device: null });
  });

  it("scales the estimate by epochs and by pixel count", () => {
    assert.equal(estimateSeconds(estimate, {}), 2.5 * 32 * 5);
    assert.equal(estimateSeconds(estimate, { img_size: 112, epochs: 10 }), 2.5 * 32 * 10);
    assert.equal(estimateSeconds(estimate, { img_size: 224, epochs: 5 }), 2.5 * 4 * 32 * 5); // 4x the pixels
    // only a total: proportional to epochs
    assert.equal(estimateSeconds({ seconds: 100, epochs: 4, img_size: 112 }, { epochs: 8 }), 200);
    assert.equal(estimateSeconds(null, { epochs: 3 }), null);
  });

  it("says the estimate in words with its basis", () => {
    const text = estimateText(estimate, { img_size: 224, epochs: 2 });
    assert.equal(
      text,
      "Estimated time: about 10 min 40 s on cpu (32 images × 2 epochs at 224 px; 2.50 s per image and epoch at 112 px; measured on this worker).",
    );
    assert.equal(estimateText(undefined, {}), "");
  });
});

describe("training phases in words", () => {
  it("names the queue position and device of a pending job", () => {
    assert.equal(phaseText({ status: "pending", queue_position: 2, device: "gpu" }), "Queued: 2 jobs ahead; it will run on a GPU worker.");
    assert.equal(phaseText({ status: "pending", queue_position: 0 }), "Queued: next in line; it will run.");
    assert.equal(phaseText({ status: "pending" }), "Queued; waiting for a worker.");
  });

  it("says each running phase", () => {
    const running = (progress) => phaseText({ status: "running", progress });
    assert.equal(running({ phase: "prepare" }), "Preparing the data: copying the accepted cases and their masks.");
    assert.equal(running({ phase: "train", epoch: 2, epochs: 5, step: 3, steps: 8 }), "Training: epoch 2 of 5, step 3 of 8.");
    assert.equal(running({ phase: "pseudo_labels" }), "Updating the pseudo-labels of the unlabeled cases (EPI).");
    assert.equal(running({ phase: "evaluate" }), "Scoring the new model on the validation set (and the test cases).");
    assert.equal(running({ phase: "store" }), "Storing the new model version.");
    assert.equal(phaseText({ status: "failed", message: "worker lost" }), "Failed: worker lost");
  });
});

describe("best vs last validation Dice", () => {
  it("labels the kept checkpoint's epoch and the last epoch", () => {
    const job = {
      progress: {
        history: [
          { epoch: 1, val_dice: 0.3 },
          { epoch: 2, val_dice: 0.52 },
          { epoch: 3, val_dice: 0.47 },
        ],
      },
    };
    const d = progressDice(job);
    assert.deepEqual(d, { val_dice_best: 0.52, best_epoch: 2, val_dice_last: 0.47, last_epoch: 3 });
    assert.deepEqual(
      diceLabels(d).map((x) => [x.key, x.label, x.value]),
      [
        ["best", "Best validation Dice (epoch 2, the checkpoint kept)", 0.52],
        ["last", "Last epoch's validation Dice (epoch 3)", 0.47],
      ],
    );
    assert.equal(progressDice({ progress: {} }), null);
    assert.deepEqual(diceLabels({ val_dice: 0.4 }).map((x) => x.key), ["best"]);
  });
});

const candidate = {
  id: 7,
  number: 3,
  status: "candidate",
  settings: { img_size: 112, mode: "semi_supervised", init: "finetune", epochs: 5, epochs_run: 5, text_len: 10, seed: 0 },
  validation_set: { id: 2, version: 2, n: 5, source: "val", seed: null },
  metrics: {
    val_dice: 0.412,
    empty_baseline_dice: 0,
    n_val_lesion: 5,
    n_val_empty_on_lesion: 1,
    test_dice: 0.38,
    n_test: 4,
    baseline: { model_version: 5, dice: 0.405 },
  },
  promotion: { reason: "not promoted: validation Dice 0.412 vs 0.405 for the active model (margin 0.020)" },
};
const active = { id: 5, number: 2, status: "active", metrics: { val_dice: 0.39 }, validation_set: { version: 1 } };

describe("models table", () => {
  it("shows each version's settings and validation set", () => {
    assert.equal(settingsText(candidate), "112 px · semi-supervised · fine-tuned · 5 of 5 epochs · text 10 tokens · seed 0");
    assert.equal(validationSetText(candidate), "v2 · 5 cases (val split)");
    assert.equal(validationSetText({ validation_set: { version: 1, n: 1, source: "seeded", seed: 3 } }), "v1 · 1 case (seeded pick, seed 3)");
    assert.equal(validationSetText({ metrics: { val_source: "train" } }), "its own training cases");
    assert.equal(settingsText({}), "");
  });

  it("shows the promotion decision and a hand promotion", () => {
    assert.equal(
      promotionText({ promotion: { reason: "not promoted: x", by_hand: { user: "ana", at: "2026" } } }),
      "not promoted: x; promoted by hand by ana",
    );
  });

  it("confirms a hand promotion with the numbers on the same cases", () => {
    assert.equal(activeDiceOnSameCases(candidate, active), 0.405);
    assert.equal(activeDiceOnSameCases(candidate, { ...active, id: 99 }), null);
    assert.equal(
      confirmText(candidate, active),
      [
        "Promote model v3? New proposals will use it.",
        "Validation Dice 0.412 on validation set v2 · 5 cases (val split).",
        "An empty mask scores 0.000 on the same cases.",
        "Empty prediction on 1 of 5 validation cases with a lesion.",
        "Active model v2: 0.405 on the same cases.",
        "Test Dice 0.380 (4 cases).",
        "Automatic decision: not promoted: validation Dice 0.412 vs 0.405 for the active model (margin 0.020).",
      ].join("\n"),
    );
    const other = confirmText({ ...candidate, metrics: { val_dice: 0.5 } }, active, { rollback: true });
    assert.match(other, /^Roll back to model v3\?/);
    assert.match(other, /Active model v2: 0\.390 on validation set v1 \(measured in its own round\)\./);
  });

  it("says the effort saved", () => {
    assert.equal(
      effortText({ n_from_proposal: 12, fraction_unchanged: 0.25, mean_dice: 0.8123, median_seconds_to_accept: 74 }),
      "12 accepted · 25% unchanged · proposal vs accepted Dice 0.81 · median 1 min 14 s to accept",
    );
    assert.equal(effortText(null), "");
  });
});
