import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";

import { ViewTransform } from "../../annotator_ui/static/annotator_ui/js/geometry.js";
import { InputMachine, STATES } from "../../annotator_ui/static/annotator_ui/js/input.js";
import { countOn } from "../../annotator_ui/static/annotator_ui/js/mask.js";
import { LAYERS, MaskStore } from "../../annotator_ui/static/annotator_ui/js/store.js";
import { UndoStack } from "../../annotator_ui/static/annotator_ui/js/undo.js";

let store;
let undo;
let view;
let input;

/** Pointer event at image (x, y); the view has scale 10 and no offset, so screen = 10 × image. */
const at = (type, x, y, extra = {}) => ({ type, image: { x, y }, screen: { x: x * 10, y: y * 10 }, button: 0, ...extra });
const edit = () => store.layer(LAYERS.EDIT);

beforeEach(() => {
  store = new MaskStore();
  store.load({ width: 20, height: 20 });
  undo = new UndoStack(store);
  view = new ViewTransform({ scale: 10 });
  input = new InputMachine({ store, undo, view });
});

describe("InputMachine", () => {
  it("a brush stroke paints along the path and undoes as one step", () => {
    input.brushRadius = 1;
    const states = [];
    input.on("state", (e) => states.push(e.state));
    input.handle(at("down", 2.5, 2.5));
    assert.equal(input.state, STATES.PAINTING);
    input.handle(at("move", 10.5, 2.5));
    input.handle(at("move", 10.5, 10.5));
    input.handle(at("up", 10.5, 10.5));
    assert.deepEqual(states, ["painting", "idle"]);
    assert.equal(edit()[2 * 20 + 6], 1, "between the first two samples");
    assert.equal(edit()[6 * 20 + 10], 1, "between the last two samples");
    assert.equal(undo.size, 1);
    undo.undo();
    assert.equal(countOn(edit()), 0);
  });

  it("the eraser (or shift + brush) clears pixels", () => {
    store.replace(new Uint8Array(400).fill(1));
    input.setTool("eraser");
    input.handle(at("down", 5.5, 5.5));
    input.handle(at("up", 5.5, 5.5));
    assert.equal(edit()[5 * 20 + 5], 0);
    input.setTool("brush");
    input.handle(at("down", 15.5, 15.5, { shiftKey: true }));
    input.handle(at("up", 15.5, 15.5, { shiftKey: true }));
    assert.equal(edit()[15 * 20 + 15], 0);
  });

  it("polygon: clicks add vertices, clicking near the first vertex closes and fills", () => {
    input.setTool("polygon");
    input.handle(at("down", 2, 2));
    assert.equal(input.state, STATES.POLYGON);
    input.handle(at("down", 8, 2));
    input.handle(at("down", 8, 8));
    input.handle(at("down", 2, 8));
    input.handle(at("down", 2.3, 2.2)); // within 8 screen px of (2, 2)
    assert.equal(input.state, STATES.IDLE);
    assert.equal(countOn(edit()), 36);
    assert.equal(undo.size, 1);
  });

  it("polygon: Enter closes, Backspace drops a vertex, Escape discards", () => {
    input.setTool("polygon");
    for (const [x, y] of [[0, 0], [4, 0], [9, 9], [0, 4]]) input.handle(at("down", x, y));
    input.handle({ type: "keydown", key: "Backspace" });
    assert.equal(input.vertices.length, 3);
    input.handle({ type: "keydown", key: "Enter" });
    assert.equal(input.state, STATES.IDLE);
    const filled = countOn(edit());
    assert.ok(filled > 0);
    input.handle(at("down", 10, 10));
    input.handle(at("down", 15, 10));
    input.handle({ type: "keydown", key: "Escape" });
    assert.equal(input.state, STATES.IDLE);
    assert.equal(countOn(edit()), filled);
  });

  it("fill floods the enclosed region; shift-fill clears a blob", () => {
    input.setTool("polygon");
    input.brushRadius = 0.5;
    input.setTool("brush");
    // a closed square ring from (4,4) to (12,12)
    input.handle(at("down", 4.5, 4.5));
    for (const [x, y] of [[12.5, 4.5], [12.5, 12.5], [4.5, 12.5], [4.5, 4.5]]) input.handle(at("move", x, y));
    input.handle(at("up", 4.5, 4.5));
    const ring = countOn(edit());
    input.setTool("fill");
    input.handle(at("down", 8.5, 8.5));
    assert.equal(countOn(edit()), 81);
    assert.ok(ring < 81);
    input.handle(at("down", 8.5, 8.5, { shiftKey: true }));
    assert.equal(countOn(edit()), 0);
    assert.equal(undo.size, 3);
  });

  it("pans with the middle button, the pan tool, or space-drag, without painting", () => {
    let views = 0;
    input.on("view", () => views++);
    input.handle(at("down", 1, 1, { button: 1 }));
    assert.equal(input.state, STATES.PANNING);
    input.handle(at("move", 3, 4));
    input.handle(at("up", 3, 4));
    assert.deepEqual([view.tx, view.ty], [20, 30]);
    input.handle({ type: "keydown", key: " " });
    input.handle(at("down", 0, 0));
    input.handle(at("move", 1, 0));
    input.handle(at("up", 1, 0));
    input.handle({ type: "keyup", key: " " });
    assert.equal(view.tx, 30);
    assert.equal(views, 2);
    assert.equal(countOn(edit()), 0);
  });

  it("changing tool mid-polygon discards it; unknown tools are refused", () => {
    input.setTool("polygon");
    input.handle(at("down", 1, 1));
    input.setTool("brush");
    assert.equal(input.state, STATES.IDLE);
    assert.deepEqual(input.vertices, []);
    assert.throws(() => input.setTool("lasso"), RangeError);
  });
});

describe("InputMachine: window/level drag", () => {
  it("the window tool turns a drag into window events and never paints", () => {
    input.setTool("window");
    const events = [];
    input.on("window", (e) => events.push(e));
    input.handle(at("down", 5, 5));
    assert.equal(input.state, STATES.WINDOWING);
    input.handle(at("move", 8, 4));
    input.handle(at("up", 9, 3));
    assert.equal(input.state, STATES.IDLE);
    assert.deepEqual(events, [
      { phase: "start", dx: 0, dy: 0 },
      { phase: "move", dx: 30, dy: -10 },
      { phase: "move", dx: 40, dy: -20 },
      { phase: "end" },
    ]);
    assert.equal(countOn(edit()), 0);
    assert.equal(undo.size, 0);
  });

  it("Ctrl + drag adjusts the window with any tool; a tool change ends the drag", () => {
    const events = [];
    input.on("window", (e) => events.push(e.phase));
    input.handle(at("down", 5, 5, { ctrlKey: true }));
    assert.equal(input.state, STATES.WINDOWING);
    input.handle(at("move", 6, 5));
    input.setTool("eraser");
    assert.equal(input.state, STATES.IDLE);
    assert.deepEqual(events, ["start", "move", "end"]);
    assert.equal(countOn(edit()), 0, "the brush did not paint");
    input.handle(at("down", 5, 5, { ctrlKey: true, button: 2 }));
    assert.equal(input.state, STATES.PANNING, "the right button still pans");
  });
});
