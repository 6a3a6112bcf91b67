import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  curves,
  formatDuration,
  jobFromMessage,
  linePath,
  progressFraction,
  summary,
} from "../../annotator_ui/static/annotator_ui/js/jobs.js";

const running = {
  id: 4,
  kind: "training",
  status: "running",
  progress: {
    phase: "train",
    epoch: 3,
    epochs: 4,
    step: 5,
    steps: 10,
    losses: { dice: 0.2, bce: 0.1 },
    val_dice: 0.61,
    eta_s: 130,
    history: [
      { epoch: 1, losses: { total: 0.9 }, val_dice: 0.3 },
      { epoch: 2, loss: 0.5, val_dice: 0.55 },
    ],
  },
};

describe("jobs", () => {
  it("unwraps websocket messages", () => {
    assert.equal(jobFromMessage(JSON.stringify({ job: running })).id, 4);
    assert.equal(jobFromMessage(running).id, 4);
  });

  it("progress fraction from epochs and steps, or done/total", () => {
    assert.equal(progressFraction(running), (2 + 0.5) / 4);
    assert.equal(progressFraction({ status: "running", progress: { done: 3, total: 12 } }), 0.25);
    assert.equal(progressFraction({ status: "succeeded", progress: {} }), 1);
    assert.equal(progressFraction({ status: "pending", progress: {} }), 0);
  });

  it("curves per epoch", () => {
    assert.deepEqual(curves(running), {
      loss: [[1, 0.9], [2, 0.5]],
      dice: [[1, 0.3], [2, 0.55]],
    });
  });

  it("summary line", () => {
    assert.equal(summary(running), "train · epoch 3/4 · step 5/10 · loss 0.300 · val Dice 0.610 · ETA 2 min 10 s");
    assert.equal(formatDuration(3725), "1 h 02 min");
    assert.equal(formatDuration(null), "");
  });

  it("linePath maps data into the box, y up", () => {
    assert.equal(linePath([[0, 0], [1, 1]], { width: 10, height: 10, pad: 0 }), "M0.0,10.0 L10.0,0.0");
    assert.equal(linePath([], { width: 10, height: 10 }), "");
    assert.equal(linePath([[1, 5]], { width: 10, height: 10, pad: 0 }), "M5.0,5.0", "a single point sits mid-box");
  });
});

describe("waitingText", async () => {
  const { waitingText } = await import("../../annotator_ui/static/annotator_ui/js/jobs.js");

  it("names the queue position and the device of a pending job", () => {
    const job = { status: "pending", queue: "training", queue_position: 2, device: "cpu" };
    assert.equal(waitingText(job), "Queued: 2nd in the training queue, to run on a CPU worker…");
    assert.equal(
      waitingText({ ...job, queue_position: 1, device: "cuda" }),
      "Queued: next in the training queue, to run on a GPU worker…",
    );
    assert.equal(waitingText({ ...job, queue_position: 13 }), "Queued: 13th in the training queue, to run on a CPU worker…");
  });

  it("says when no worker of the queue is running", () => {
    const job = { status: "pending", queue: "lvit-test-1.inference", queue_position: 1, device: null };
    assert.equal(waitingText(job), "Queued: next in the inference queue. No inference worker is running; start one to run this job.");
  });

  it("names the device once claimed and says nothing when finished", () => {
    assert.equal(waitingText({ status: "running", device: "cuda" }), "Starting on the GPU: preparing the data…");
    assert.equal(waitingText({ status: "running" }), "Preparing the data…");
    assert.equal(waitingText({ status: "succeeded", device: "cpu" }), "");
  });
});
