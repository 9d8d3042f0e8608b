// nwwatch label: the page's controls, keys and start-up (label.js holds the state, drawing,
// editing and preview, label-save.js the save, label-keys.js the handle keys; all loaded
// before this file).
"use strict";

// ---------------------------------------------------------------- controls
function viewFilter() {
  const c = $("contrast").value, b = $("brightness").value;
  $("frame-image").style.filter = `contrast(${c}) brightness(${b})`;
  $("mask-image").style.opacity = $("opacity").value;
  $("contrast-value").textContent = Number(c).toFixed(2);
  $("brightness-value").textContent = Number(b).toFixed(2);
  $("opacity-value").textContent = Math.round(100 * $("opacity").value);
  $("zoom-value").textContent = Number($("zoom").value).toFixed(2);
}

// Buttons with nothing to act on are disabled (they marked the frame changed, or did
// nothing without a word).
function updateButtons() {
  // No frame opened yet (the first one failed to open), or one opening: nothing to edit.
  const g = state.loading ? null : state.geometry;
  for (const id of ["add-droplet", "add-wire", "reset", "explicit-facet", "save"]) {
    $(id).disabled = !g;
  }
  $("remove-droplet").disabled = !g || !g.droplet;
  $("remove-wire").disabled = !g || !g.wire;
  // each button names the edit it would undo or redo
  const undo = state.undo.at(-1), redo = state.redo.at(-1);
  $("undo-stroke").disabled = !g || !undo;
  $("redo-stroke").disabled = !g || !redo;
  $("undo-stroke").title = undo ? `undo: ${undo.what} (Ctrl+Z)` : UNDO_TITLE;
  $("redo-stroke").title = redo ? `redo: ${redo.what} (Ctrl+Shift+Z or Ctrl+Y)` : REDO_TITLE;
}
const UNDO_TITLE = $("undo-stroke").title, REDO_TITLE = $("redo-stroke").title;

function defaultFacet() {
  const g = state.geometry, [h, w] = g.shape;
  if (state.facetEdge) return state.facetEdge.map((p) => p.slice());
  const c = g.droplet ? g.droplet.center : [h / 2, w / 2];
  const r = g.droplet ? g.droplet.radius_px : w / 8;
  return [[c[0] + r * 0.7, c[1] - r * 0.7], [c[0] + r * 0.7, c[1] + r * 0.7]];
}

// Previous/next frame; a frame that failed to open is stepped over (the list still opens it).
function step(delta) {
  let i = state.index + delta;
  while (i >= 0 && i < state.frames.length && state.frames[i].failed) i += delta;
  if (i >= 0 && i < state.frames.length) openFrame(i);
}

// Ctrl+Z: while a paint polygon is being drawn, its last corner; else the last edit (label.js
// "undo"). (It removed the last finished stroke under the polygon being drawn, which stayed
// as it was: an earlier stroke lost unnoticed, and the misplaced corner still there.)
function undoKey() {
  const d = state.draft;
  if (d && d.brush_px === undefined && d.points.length) {
    d.points.pop();
    if (!d.points.length) state.draft = null;
    renderDraft();
    $("status").textContent = d.points.length
      ? `polygon being drawn: ${d.points.length} corner${d.points.length > 1 ? "s" : ""}`
      : "polygon being drawn: no corner left";
    return;
  }
  if (!state.undo.length) {  // the shapes as the frame opened (the model's strokes) stay
    $("status").textContent = "no edit of yours to undo on this frame (the shapes it " +
      "opened with stay: “Back to the model's proposal” drops every edit)";
    return;
  }
  $("undo-stroke").click();
}

// Ctrl+Shift+Z / Ctrl+Y: the edit Undo undid last. While a paint polygon is being drawn it
// does nothing: the corner Ctrl+Z removed is not put back (an edit put back instead would
// change the labels unasked).
function redoKey() {
  const d = state.draft;
  if (d && d.brush_px === undefined && d.points.length) {
    $("status").textContent = "polygon being drawn: redo puts back undone edits, not " +
      "corners (click the corner again; Enter closes the polygon, Esc drops it)";
    return;
  }
  if (!state.redo.length) {
    $("status").textContent = "no undone edit to redo (a new edit, another frame or " +
      "“Back to the model's proposal” drops the edits Undo undid)";
    return;
  }
  $("redo-stroke").click();
}

// The header is one line of fixed height (label.css): a long status or reason is cut with
// "...", its whole text in the tooltip. (When it wrapped to a second line, "unsaved changes"
// appearing mid-drag moved the frame under the pointer.)
function titleFollowsText(id) {
  const node = $(id);
  const copy = () => { node.title = node.textContent; };
  new MutationObserver(copy).observe(node, {childList: true, characterData: true,
                                            subtree: true});
  copy();
}

function setup() {
  for (const id of ["status", "angle-reason", "data-dir"]) titleFollowsText(id);
  const svg = $("canvas");
  svg.addEventListener("pointerdown", onPointerDown);
  svg.addEventListener("pointermove", onPointerMove);
  svg.addEventListener("pointerup", onPointerUp);
  svg.addEventListener("dblclick", () => {
    if (mode() === "polygon") closePolygon();
    else if (mode() === "edit" && state.pressed && state.pressed.kind === "wire") {
      removeVertex(state.pressed.i);  // a double-click on a corner (see state.pressed)
    }
  });
  $("prev").onclick = () => step(-1);
  $("next").onclick = () => step(1);
  $("frame-select").onchange = (e) => openFrame(Number(e.target.value));
  $("save").onclick = () => save();
  $("conflict-overwrite").onclick = () => overwriteSave();
  $("conflict-theirs").onclick = () => openSavedVersion();
  setupHandleKeys();
  // the last edit made on this frame since it opened; the shapes it opened with stay
  // (Ctrl+Z had removed the model's stroke of a second droplet)
  $("undo-stroke").onclick = undoEdit;
  // the edit undone last, until a new edit is made or another frame opens
  $("redo-stroke").onclick = redoEdit;
  $("reset").onclick = async () => {
    if (state.loading) return;
    // Going back is not undone, and it drops the undo history: asked first whenever there
    // is something to lose, even right after a save.
    const question = state.dirty ? "Discard the unsaved changes of this frame?"
      : state.undo.length || state.redo.length
        ? "Go back to the model's proposal? Your edits of this frame can then no longer be " +
          "undone or redone." : null;
    if (question && !window.confirm(question)) return;
    setBusy(true);
    $("status").textContent = "computing the model's proposal...";
    // The frame asked for: another frame opened before the proposal answers keeps its own
    // shapes (this answer was that frame's geometry, and Save wrote it under its name); one
    // that failed to open left this frame shown, whose proposal it is.
    const seq = shownSeq();
    try {
      const doc = await api(`/api/frames/${state.index}/geometry?model=1`);
      if (seq !== shownSeq() || state.loading) return;
      state.geometry = doc.geometry;
      clearHistory();  // put back onto the proposal, they would not be the user's edits
      state.facetEdge = null;
      $("explicit-facet").checked = state.geometry.facet !== null;
      $("frame-origin").textContent = "model proposal";
      $("frame-origin").className = "tag";
      changed();
    } catch (err) {
      if (seq !== shownSeq() || state.loading) return;
      $("status").textContent = `error: ${err.message}`;
      setBusy(false);
    }
  };
  $("explicit-facet").onchange = (e) => {
    recordEdit(`“Facet line with its own handles” ${e.target.checked ? "ticked" : "unticked"}`);
    state.geometry.facet = e.target.checked ? defaultFacet() : null;
    changed();
  };
  $("add-droplet").onclick = () => {
    const [h, w] = state.geometry.shape;
    recordEdit("droplet circle placed here");
    state.geometry.droplet = {center: [h / 2, w / 2], radius_px: Math.min(h, w) / 8};
    changed();
  };
  $("add-wire").onclick = () => {
    const [h, w] = state.geometry.shape, a = Math.min(h, w) / 10;
    recordEdit("wire polygon placed here");
    state.geometry.wire = [[h / 2, w / 2 - a], [h, w / 2 - a], [h, w / 2 + a], [h / 2, w / 2 + a]];
    changed();
  };
  $("remove-droplet").onclick = () => {
    recordEdit("removal of the droplet circle");
    state.geometry.droplet = null;
    changed();
  };
  $("remove-wire").onclick = () => {
    recordEdit("removal of the wire polygon");
    state.geometry.wire = null;
    changed();
  };
  for (const id of ["contrast", "brightness", "opacity"]) $(id).oninput = viewFilter;
  $("zoom").oninput = () => { viewFilter(); zoomAboutCentre(); render(); };
  $("brush-radius").oninput = (e) => { $("brush-radius-value").textContent = e.target.value; };
  // A reload, a closed tab or a typed address would drop unsaved shapes: ask first.
  window.addEventListener("beforeunload", (e) => {
    if (state.dirty) { e.preventDefault(); e.returnValue = ""; }
  });
  window.addEventListener("resize", () => { if (state.geometry) { layout(); render(); } });
  document.addEventListener("keydown", (e) => {
    // With Caps Lock on the key is "S" or "Z": compared as typed, Ctrl+S left the page
    // unsaved and opened the browser's own "Save page as" dialog instead.
    const letter = (e.key || "").toLowerCase(), ctrl = e.ctrlKey || e.metaKey;
    if (ctrl && letter === "s") { e.preventDefault(); save(); return; }
    // A text field keeps its keys (Ctrl+Z there undoes typing, not a stroke).
    if (typingInField(e) || handleKey(e)) return;
    // Ctrl+Shift+Z is redo, as is Ctrl+Y: neither undoes a stroke. (preventDefault: the
    // browser's own Ctrl+Y / Cmd+Y opens its history on some systems.)
    if (ctrl && !e.shiftKey && letter === "z") undoKey();
    else if (ctrl && (e.shiftKey ? letter === "z" : letter === "y")) {
      e.preventDefault();
      redoKey();
    }
    else if (e.key === "Enter") closePolygon();
    else if (e.key === "Escape") { state.draft = null; renderDraft(); }
    // preventDefault: on the focused frame list or a slider the key would also move that
    // control (the list then opened a second frame, skipping one).
    else if (e.key === "PageDown") { e.preventDefault(); $("next").click(); }
    else if (e.key === "PageUp") { e.preventDefault(); $("prev").click(); }
  });
  viewFilter();
}

setup();
loadFrames().then(() => state.frames.length ? openFrame(rememberedFrame()) : setBusy(false));
