// nwwatch label: the shape handles by keyboard. Every handle is focusable (Tab, or H /
// Shift+H to cycle); on the focused handle the arrows move it 1 frame pixel (Shift: 10),
// Delete removes a polygon corner (a polygon keeps 3), Insert adds one halfway to the next.
// label.js draws the handles (handleAttrs, restoreHandleFocus); loaded after it.
"use strict";

const HANDLE_STEP_PX = 1, HANDLE_STEP_SHIFT_PX = 10;  // frame pixels per arrow key press

function handleName(id) {
  const g = state.geometry;
  if (id === "droplet-center") return "droplet centre";
  if (id === "droplet-radius") return "droplet rim (radius)";
  const [kind, i] = id.split("-");
  if (kind === "wire") return `wire corner ${Number(i) + 1} of ${g.wire.length}`;
  return `facet end ${Number(i) + 1}`;
}

// What label.js gives each handle: in the Tab order, named for screen readers.
function handleAttrs(id) {
  return {"data-handle": id, tabindex: 0, role: "button", "aria-label": handleName(id)};
}

// (kind, i) of a handle id, as the drags use it; null when the shape is gone.
function handleTarget(id) {
  const g = state.geometry;
  if (!g || !id) return null;
  if (id === "droplet-center") return g.droplet ? {kind: "center"} : null;
  if (id === "droplet-radius") return g.droplet ? {kind: "radius"} : null;
  const [kind, i] = id.split("-");
  const list = kind === "wire" ? g.wire : g.facet;
  return list && Number(i) < list.length ? {kind, i: Number(i)} : null;
}

function handleElement(id) {
  return id ? $("handles").querySelector(`[data-handle="${id}"]`) : null;
}

// The handles were drawn anew: the one that had the focus gets it back (else keys held
// down would stop after one step); the line under the shapes says where it is.
function restoreHandleFocus(hadFocus) {
  const node = handleElement(state.selected);
  if (hadFocus && node) node.focus({preventScroll: true});
  showSelected();
}

function showSelected() {
  const focused = $("handles").contains(document.activeElement);
  const id = focused ? document.activeElement.dataset.handle : null;
  const t = handleTarget(id);
  if (!t) { $("selected-handle").textContent = "no handle selected"; return; }
  const g = state.geometry;
  const p = t.kind === "center" || t.kind === "radius" ? g.droplet.center
    : (t.kind === "wire" ? g.wire : g.facet)[t.i];
  const where = t.kind === "radius" ? `radius ${g.droplet.radius_px.toFixed(1)} px`
    : `row ${p[0].toFixed(1)}, col ${p[1].toFixed(1)}`;
  $("selected-handle").textContent = `selected: ${handleName(id)}, ${where}`;
}

function focusHandle(step) {
  const nodes = [...$("handles").querySelectorAll(".handle")];
  if (!nodes.length) { $("status").textContent = "no handles on this frame"; return; }
  const current = nodes.indexOf(document.activeElement);
  const next = current < 0 ? (step > 0 ? 0 : nodes.length - 1)
    : (current + step + nodes.length) % nodes.length;
  nodes[next].focus({preventScroll: true});
  revealHandle(nodes[next]);
}

// A handle selected or moved by key is scrolled into view when it is outside it (a zoomed
// frame: H selected handles off screen, named under Shapes but nowhere to be seen). Only
// then: a redraw mid-drag or a handle in view does not move the frame.
function revealHandle(node) {
  if (node) node.scrollIntoView({block: "nearest", inline: "nearest"});
}

// Move a handle by (dRow, dCol) frame pixels; the rim handle changes the radius instead
// (right or up: larger).
function nudgeHandle(t, dRow, dCol) {
  const g = state.geometry;
  recordEdit(`move of the ${targetName(t)} by key`, `key ${t.kind} ${t.i}`);
  if (t.kind === "center") g.droplet.center = [g.droplet.center[0] + dRow, g.droplet.center[1] + dCol];
  else if (t.kind === "radius") {
    g.droplet.radius_px = Math.max(0.5, g.droplet.radius_px + (dCol || -dRow));
  } else {
    const list = t.kind === "wire" ? g.wire : g.facet;
    list[t.i] = withinView([list[t.i][0] + dRow, list[t.i][1] + dCol]);
  }
  changed();
}

function deleteHandle(t) {
  const wire = state.geometry.wire;
  if (t.kind !== "wire") {
    $("status").textContent = "Delete removes wire polygon corners only (Remove circle / " +
      "Remove polygon remove whole shapes)";
  } else if (wire.length <= 3) {
    $("status").textContent = "not removed: the wire polygon keeps at least 3 corners";
  } else {
    recordEdit(`removal of ${targetName(t)}`);
    wire.splice(t.i, 1);
    state.selected = `wire-${(t.i + wire.length - 1) % wire.length}`;  // the one before it
    changed();
  }
}

function insertAfterHandle(t) {
  if (t.kind !== "wire") {  // (it did nothing without a word, while Delete said why)
    $("status").textContent = "Insert adds wire polygon corners only: select a wire " +
      "corner (H, Tab or a click) and Insert adds one halfway to the next";
    return;
  }
  recordEdit(`corner added to the wire polygon after corner ${t.i + 1}`);
  const wire = state.geometry.wire, p = wire[t.i], q = wire[(t.i + 1) % wire.length];
  wire.splice(t.i + 1, 0, [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2]);
  state.selected = `wire-${t.i + 1}`;
  changed();
}

// A text field (none on the page today; a browser extension or a later field) keeps its
// keys: typing "h" or an arrow there must not move a shape.
function typingInField(event) {
  const t = event.target;
  if (!t || !t.tagName) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA") return true;
  return t.tagName === "INPUT" && !["checkbox", "radio", "range", "button", "submit",
                                      "reset", "color", "file"].includes(t.type);
}

const ARROWS = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]};

// The handle keys; true when the key was one of them (label-controls.js then stops).
function handleKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || typingInField(e) || !state.geometry ||
      state.loading) return false;  // (a frame opening: label.js setLoading)
  if (e.key === "h" || e.key === "H") {
    if (e.target.id === "frame-select") return false;  // the frame list picks by name
    e.preventDefault();
    focusHandle(e.shiftKey ? -1 : 1);
    return true;
  }
  if (!$("handles").contains(e.target)) return false;  // on a slider the arrows are its own
  const t = handleTarget(e.target.dataset.handle);
  if (!t) return false;
  if (ARROWS[e.key]) {
    e.preventDefault();  // the canvas would scroll as well
    const step = e.shiftKey ? HANDLE_STEP_SHIFT_PX : HANDLE_STEP_PX;
    nudgeHandle(t, ARROWS[e.key][0] * step, ARROWS[e.key][1] * step);
  } else if (e.key === "Delete" || e.key === "Backspace") {
    e.preventDefault();
    deleteHandle(t);
  } else if (e.key === "Insert") {
    e.preventDefault();
    insertAfterHandle(t);
  } else return false;
  revealHandle(handleElement(state.selected));
  return true;
}

function setupHandleKeys() {
  // Focus by Tab, H or a click selects the handle the keys act on. A run of arrow presses
  // (one undo step) ends when another handle is selected or none is: pressed again later,
  // the arrows make a new step. (Every redraw gives the focus back to the same handle
  // at once: that neither selects another handle nor leaves none selected.)
  $("handles").addEventListener("focusin", (e) => {
    const id = e.target.dataset.handle;
    if (id && id !== state.selected) state.mergeOpen = null;
    if (id) state.selected = id;
    showSelected();
  });
  $("handles").addEventListener("focusout", () => setTimeout(() => {
    if (!$("handles").contains(document.activeElement)) state.mergeOpen = null;
    showSelected();
  }, 0));
}
