// nwwatch label: edit a frame's droplet circle, wire polygon, facet line and painted strokes.
// Geometry is kept in image (row, col) pixel coordinates (integer = pixel centre); the SVG
// draws pixel (r, c) over [c, c+1] x [r, r+1], so x = col + 0.5 and y = row + 0.5.
// The server rasterises every change (POST preview): the overlay is what Save writes.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const HANDLE_PX = 6;  // handle radius on screen
const $ = (id) => document.getElementById(id);

const state = {
  frames: [], index: 0, geometry: null, origin: "", dirty: false, facetEdge: null,
  scale: 1, drag: null, draft: null, previewSeq: 0, previewTimer: null,
  previewInFlight: false,  // a preview request is on the server (one at a time: see below)
  confidenceDigits: 2, queueLength: 0,  // the queue's entries in the frame list
  openSeq: 0,  // the latest openFrame: an older one's late answer is dropped
  selected: null,  // data-handle of the handle last focused ("wire-2"): keys act on it
  conflict: null,  // a refused save (409) of this frame: {token} of the file now saved
  loading: false,  // a frame is opening: state.geometry still holds the previous frame's
  // The frame whose shapes state.geometry holds (null: none yet): {index, image (its image
  // URL), seq (the openFrame that opened it)}. A frame that fails to open gives way to it.
  shown: null,
  edits: 0,  // counts changes: a save clears "dirty" only if none came while it was sent
  savedToken: "",  // the saved file this page's geometry started from (see save)
  // The handle last pressed ({kind, i}; null: the last press was elsewhere). A drag captures
  // the pointer on the canvas, so a double-click on a corner reaches the canvas, not the
  // corner: the canvas's dblclick reads which corner it was from here.
  pressed: null,
  rimWay: [0, 1],  // the side of the centre the rim handle is drawn on (see rimPoint)
  openingStatus: null,  // the status line while a frame's first overlay is drawn
  captured: new Set(),  // pointers the canvas captured (a drag, a brush stroke)
  // This frame's edits since it opened, in the order made (label.js "undo"): each {what,
  // shapes} with the shapes as they were before it; redo holds what Undo undid, last last.
  undo: [], redo: [],
  mergeOpen: null,  // the arrow-key run the last edit belongs to (see recordEdit)
  facetWireEdge: null,  // {i, n}: the facet is the wire's edge from corner i (of n), or null
};
window.nwLabel = state;  // for people debugging the page (and for tests)

function setBusy(busy) { document.body.dataset.state = busy ? "busy" : "ready"; }

// While a frame opens, state.geometry still holds the shown frame's shapes: they and its
// overlay are hidden and cannot be edited (label.css, updateButtons), since an edit made then
// was dropped without a word when the new frame's shapes came; a frame that fails to open
// gives them back as they were.
function setLoading(loading) {
  state.loading = loading;
  document.body.toggleAttribute("data-opening", loading);
  if (loading) {  // a drag in progress ends here: its release would not reach the canvas
    state.drag = state.pressed = null;
    const canvas = $("canvas");
    for (const id of state.captured) {
      if (canvas.hasPointerCapture(id)) canvas.releasePointerCapture(id);
    }
    state.captured.clear();
  }
  updateButtons();
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {  // the browser's own words ("Failed to fetch") do not say what to do
    throw new Error("no answer from the nwwatch label server (stopped?): the shapes are " +
                    "still on this page; start it again on the same port, then save");
  }
  const doc = (response.headers.get("Content-Type") || "").startsWith("application/json")
    ? await response.json() : null;
  if (!response.ok) {
    const err = new Error((doc && doc.error) || response.statusText);
    err.status = response.status;  // save() tells a refused save (409) from a failed one
    err.doc = doc;
    throw err;
  }
  return doc;
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

const toX = (p) => p[1] + 0.5;
const toY = (p) => p[0] + 0.5;

function imagePoint(event) {
  const svg = $("canvas");
  const pt = new DOMPoint(event.clientX, event.clientY).matrixTransform(
    svg.getScreenCTM().inverse());
  return [pt.y - 0.5, pt.x - 0.5];  // (row, col)
}

// ---------------------------------------------------------------- frames
async function loadFrames() {
  const doc = await api("/api/frames");
  state.frames = doc.frames;
  state.confidenceDigits = confidenceDigits(doc.frames);
  // least confident first; those labelled already listed last, with their rank
  const queued = doc.frames.filter(isQueued);
  queued.forEach((f, k) => { f.queueRank = f.info.queue_rank || k + 1; });
  state.queueLength = queued.length;
  $("data-dir").textContent = `DATA: ${doc.data}   model: ${doc.model}`;
  const select = $("frame-select");
  select.innerHTML = "";
  for (const f of doc.frames) {
    const option = document.createElement("option");
    option.value = f.index;
    select.appendChild(option);
    labelOption(f.index);
  }
}

// Decimals that show every two different confidences of the queue apart: a model's queue
// often lies within 0.01 (every entry read 0.40 with two). At least 2, at most 6 (the rank
// in the entry tells closer ones apart).
function confidenceDigits(frames) {
  const values = frames.filter(isQueued).map((f) => Number(f.info.confidence));
  const distinct = new Set(values).size;
  for (let digits = 2; digits < 6; digits++) {
    if (new Set(values.map((v) => v.toFixed(digits))).size === distinct) return digits;
  }
  return 6;
}

function isQueued(f) {
  return Boolean(f.info) && f.info.confidence !== undefined;
}

// The frame list's entry: saved (check mark), failed to open (cross), the queue's rank
// (1: the least confident; not its place in the list, where frames labelled already come
// last) and confidence.
function labelOption(index) {
  const f = state.frames[index];
  const conf = isQueued(f)
    ? ` (queue rank ${f.queueRank} of ${state.queueLength}, confidence `
      + `${Number(f.info.confidence).toFixed(state.confidenceDigits)})` : "";
  const mark = f.failed ? "\u2717 " : (f.saved ? "\u2713 " : "");
  $("frame-select").options[index].textContent = `${mark}${f.stem}${conf}`;
}

// Whether the shapes shown are the ones a save in flight sends (their answer comes later).
function beingSaved() {
  const s = state.savingEdits;
  return Boolean(s) && s.seq === shownSeq() && s.edits === state.edits;
}

async function openFrame(index) {
  if (state.dirty && !beingSaved() &&
      !window.confirm("Discard the unsaved changes of this frame?")) {
    $("frame-select").value = state.index;
    return;
  }
  setBusy(true);
  const seq = ++state.openSeq;
  setLoading(true);
  const draft = state.draft;
  state.draft = null;  // a polygon begun on the previous frame is not this frame's
  renderDraft();
  state.index = index;
  $("frame-select").value = index;
  // What the wait is for: the model's proposal of a 4096 x 4096 frame takes seconds.
  const frame = state.frames[index];
  $("status").textContent = frame.saved ? `opening ${frame.stem}: reading its saved shapes...`
    : `opening ${frame.stem}: the model is proposing its labels...`;
  const img = $("frame-image");
  const image = `/api/frames/${index}/image.png?${Date.now()}`;
  const loaded = new Promise((resolve) => {
    img.onload = () => resolve(true);
    img.onerror = () => resolve(false);
  });
  img.setAttribute("href", image);
  try {
    const doc = await api(`/api/frames/${index}/geometry`);
    const imageLoaded = await loaded;
    // Frames opened quickly one after another (PageDown held): a slower proposal answering
    // late must not become the geometry of the frame opened after it (Save would write it).
    if (seq !== state.openSeq) return;
    if (!imageLoaded) await imageFailure(image);
    state.shown = {index, image, seq};
    state.frames[index].failed = false;
    labelOption(index);
    state.geometry = doc.geometry;
    clearHistory();  // Ctrl+Z undoes this frame's edits, never the model's shapes
    // The previous frame's overlay is not this frame's labels (its first preview of a large
    // frame takes seconds): nothing is shown until that preview answers.
    $("mask-image").removeAttribute("href");
    state.origin = doc.origin;
    state.savedToken = doc.saved_token;
    setLoading(false);
    state.dirty = false;
    state.facetEdge = state.facetWireEdge = null;
    state.selected = null;
    rememberFrame(frame);
    showConflict(null);
    layout();
    $("explicit-facet").checked = state.geometry.facet !== null;
    $("frame-origin").textContent = doc.origin === "saved" ? "saved labels" : "model proposal";
    $("frame-origin").className = "tag" + (doc.origin === "saved" ? " saved" : "");
    state.openingStatus = doc.note ? null : `opening ${frame.stem}: drawing its labels...`;
    $("status").textContent = doc.note || state.openingStatus;
    render();
    await refreshPreview();
  } catch (err) {
    if (seq !== state.openSeq) return;
    openFailed(index, err, draft);
  }
}

// The image element says only that it failed: ask again for the server's reason.
async function imageFailure(url) {
  await api(url);  // throws with the server's message when it answers an error
  throw new Error("its image did not load");
}

// A frame that cannot be opened (its file removed or unreadable, the proposal failed): say
// which and why, and go back to the frame still shown, with its unsaved changes: its shapes
// must not be saved under the failed frame's name, nor dropped.
function openFailed(index, err, draft) {
  setLoading(false);
  state.frames[index].failed = true;
  labelOption(index);
  let text = `could not open ${state.frames[index].stem}: ${err.message}`;
  const shown = state.shown;
  if (shown) {
    state.index = shown.index;
    $("frame-select").value = shown.index;
    $("frame-image").setAttribute("href", shown.image);
    // a polygon being drawn comes back; a brush stroke does not (its release came while the
    // frame opened: given back, it went on painting at every move of the mouse)
    state.draft = draft && draft.brush_px === undefined ? draft : null;
    renderDraft();
    text += ` \u2014 still showing ${state.frames[shown.index].stem}` +
      (state.dirty ? ", its changes unsaved" : "");
  } else {
    text += " \u2014 choose another frame";
  }
  $("status").textContent = text;
  updateButtons();
  setBusy(false);
}

// A margin of a handle's size round the frame: a handle on the frame's border (the wire
// polygon's corners where the wire leaves the frame) is drawn and grabbed whole; without it
// the drawing clipped such a handle to a half, at the frame's corners to a quarter.
const FRAME_MARGIN_PX = HANDLE_PX + 2;  // screen px

function layout() {
  const [h, w] = state.geometry.shape;
  const wrap = $("canvas-wrap"), room = 4 + 2 * FRAME_MARGIN_PX;
  const fit = Math.min((wrap.clientWidth - room) / w, (wrap.clientHeight - room) / h);
  state.scale = Math.max(fit, 0.05) * Number($("zoom").value);
  const svg = $("canvas"), m = FRAME_MARGIN_PX / state.scale;  // (frame px)
  svg.setAttribute("viewBox", `${-m} ${-m} ${w + 2 * m} ${h + 2 * m}`);
  svg.setAttribute("width", w * state.scale + 2 * FRAME_MARGIN_PX);
  svg.setAttribute("height", h * state.scale + 2 * FRAME_MARGIN_PX);
  for (const id of ["frame-image", "mask-image"]) {
    $(id).setAttribute("width", w);
    $(id).setAttribute("height", h);
  }
}

// A new zoom keeps the frame point at the middle of the view where it was: the scroll
// offsets alone, kept in screen pixels, moved the view towards the frame's top left corner.
function zoomAboutCentre() {
  const wrap = $("canvas-wrap"), before = state.scale;
  const col = (wrap.scrollLeft + wrap.clientWidth / 2 - FRAME_MARGIN_PX) / before;
  const row = (wrap.scrollTop + wrap.clientHeight / 2 - FRAME_MARGIN_PX) / before;
  layout();
  wrap.scrollLeft = col * state.scale + FRAME_MARGIN_PX - wrap.clientWidth / 2;
  wrap.scrollTop = row * state.scale + FRAME_MARGIN_PX - wrap.clientHeight / 2;
}

// ---------------------------------------------------------------- drawing
function render() {
  const g = state.geometry;
  const shapes = $("shapes"), handles = $("handles"), strokes = $("strokes");
  // The handles are drawn anew: a focused one gets its focus back (label-keys.js).
  const hadFocus = handles.contains(document.activeElement);
  shapes.innerHTML = handles.innerHTML = strokes.innerHTML = "";
  const hr = HANDLE_PX / state.scale;
  for (const s of g.strokes) {
    const pts = s.points.map((p) => `${toX(p)},${toY(p)}`).join(" ");
    if (s.brush_px !== undefined) {
      el("polyline", {points: pts, class: `brush stroke c${s.class}`,
                      style: brushWidth(s.brush_px)}, strokes);
    } else {
      el("polygon", {points: pts, class: `stroke c${s.class}`}, strokes);
    }
  }
  if (g.wire) {
    el("polygon", {points: g.wire.map((p) => `${toX(p)},${toY(p)}`).join(" "),
                   class: "shape wire"}, shapes);
    g.wire.forEach((p, i) => {
      const q = g.wire[(i + 1) % g.wire.length];
      const edge = el("line", {x1: toX(p), y1: toY(p), x2: toX(q), y2: toY(q), class: "edge"},
                      handles);
      // (in the paint modes the double-click goes on to the canvas: it closes a polygon)
      edge.addEventListener("dblclick", (e) => {
        if (mode() !== "edit") return;
        e.stopPropagation();
        insertVertex(i, e);
      });
    });
    g.wire.forEach((p, i) => {
      const h = el("circle", {cx: toX(p), cy: toY(p), r: hr, class: "handle wire",
                              ...handleAttrs(`wire-${i}`)}, handles);
      h.addEventListener("pointerdown", (e) => startDrag(e, {kind: "wire", i}));
    });
  }
  const facet = g.facet || state.facetEdge;
  if (facet) {
    el("line", {x1: toX(facet[0]), y1: toY(facet[0]), x2: toX(facet[1]), y2: toY(facet[1]),
                class: "shape facet"}, shapes);
    if (g.facet) {
      g.facet.forEach((p, i) => {
        const h = el("rect", {x: toX(p) - hr, y: toY(p) - hr, width: 2 * hr, height: 2 * hr,
                              class: "handle facet", ...handleAttrs(`facet-${i}`)}, handles);
        h.addEventListener("pointerdown", (e) => startDrag(e, {kind: "facet", i}));
      });
    }
  }
  if (g.droplet) {
    const c = g.droplet.center, r = g.droplet.radius_px;
    el("circle", {cx: toX(c), cy: toY(c), r, class: "shape droplet"}, shapes);
    const centre = el("circle", {cx: toX(c), cy: toY(c), r: hr, class: "handle droplet",
                                 ...handleAttrs("droplet-center")}, handles);
    centre.addEventListener("pointerdown", (e) => startDrag(e, {kind: "center"}));
    const p = rimPoint(c, r, g.shape);
    const rim = el("circle", {cx: toX(p), cy: toY(p), r: hr, class: "handle radius",
                              ...handleAttrs("droplet-radius")}, handles);
    rim.addEventListener("pointerdown", (e) => startDrag(e, {kind: "radius"}));
  }
  restoreHandleFocus(hadFocus);
  renderDraft();
  updateButtons();
}

// A brush stroke is drawn as wide as it paints, in frame pixels: an inline style, as the
// stylesheet's .stroke width (1 screen px) would win over a stroke-width attribute.
function brushWidth(radiusPx) { return `stroke-width: ${2 * radiusPx}px`; }

// Where the rim handle is drawn: east of the centre, else the first of west, south and north
// inside the frame (a droplet at the frame's right edge had its only radius handle outside
// the frame, out of the mouse's reach). A rim being dragged keeps its side.
const RIM_WAYS = [[0, 1], [0, -1], [1, 0], [-1, 0]];  // (row, col) from the centre
function rimPoint(c, r, [h, w]) {
  const at = (way) => [c[0] + r * way[0], c[1] + r * way[1]];
  const inside = (p) => p[0] >= -0.5 && p[0] <= h - 0.5 && p[1] >= -0.5 && p[1] <= w - 0.5;
  if (!(state.drag && state.drag.kind === "radius")) {
    state.rimWay = RIM_WAYS.find((way) => inside(at(way))) || RIM_WAYS[0];
  }
  return at(state.rimWay);
}

function renderDraft() {
  const group = $("draft");
  group.innerHTML = "";
  const d = state.draft;
  if (!d || !d.points.length) return;
  const pts = d.points.map((p) => `${toX(p)},${toY(p)}`).join(" ");
  if (d.brush_px !== undefined) {
    el("polyline", {points: pts, class: `brush stroke c${d.class}`,
                    style: brushWidth(d.brush_px)}, group);
  } else {
    el("polyline", {points: pts, class: "draft"}, group);
  }
}

// ---------------------------------------------------------------- editing
function changed(status = "unsaved changes") {
  state.dirty = true;
  state.edits += 1;
  $("status").textContent = status;
  render();
  schedulePreview();
}

// ---------------------------------------------------------------- undo
// One history of the frame's edits (strokes, handle drags and keys, corners added or
// removed, shapes added or removed, the facet box), undone and redone in the order made:
// an undo that popped the last stroke whatever was done last took an earlier stroke away
// after a drag, without a word, and left the drag. Each entry keeps the shapes as they were
// before its edit (a stroke is never changed once painted: the list is copied, not them).
const MAX_UNDO = 1000;  // edits kept; the oldest go first

function shapesNow() {
  const g = state.geometry;
  return {droplet: g.droplet && {center: g.droplet.center.slice(),
                                 radius_px: g.droplet.radius_px},
          wire: g.wire && g.wire.map((p) => p.slice()),
          facet: g.facet && g.facet.map((p) => p.slice()),
          strokes: g.strokes.slice()};
}

// Call before an edit changes the shapes; `what` names it ("drag of the droplet centre").
// A run of arrow presses on one handle (`merge`: its id) is one step: held down, the keys
// repeat thirty times a second.
function recordEdit(what, merge = null) {
  if (merge && state.mergeOpen === merge && state.undo.length) return;
  state.undo.push({what, shapes: shapesNow()});
  if (state.undo.length > MAX_UNDO) state.undo.shift();
  state.redo = [];  // (the usual editor rule: redone after this edit, they would undo it)
  state.mergeOpen = merge;
}

function clearHistory() {
  state.undo = [];
  state.redo = [];
  state.mergeOpen = null;
}

// Undo (from = state.undo) or redo (state.redo) the last entry; says which edit it was.
function stepHistory(from, to, verb) {
  const entry = from.pop();
  if (!entry) return;
  to.push({what: entry.what, shapes: shapesNow()});
  state.mergeOpen = null;
  state.drag = null;  // a drag under way would go on from shapes that are gone
  Object.assign(state.geometry, entry.shapes);
  $("explicit-facet").checked = state.geometry.facet !== null;
  changed(`${verb}: ${entry.what}`);
}

function undoEdit() { stepHistory(state.undo, state.redo, "undone"); }
function redoEdit() { stepHistory(state.redo, state.undo, "redone"); }

// How an edit names a handle ({kind, i} as the drags use it).
function targetName(t) {
  if (t.kind === "center") return handleName("droplet-center");
  if (t.kind === "radius") return handleName("droplet-radius");
  return handleName(`${t.kind}-${t.i}`);
}

const CLASS_NAMES = {0: "background", 1: "nanowire", 2: "droplet", 255: "unlabeled"};

function startDrag(event, target) {
  if (mode() !== "edit" || event.button !== 0) return;
  event.preventDefault();  // (no text selection; it also keeps the browser from focusing)
  event.stopPropagation();
  event.currentTarget.focus({preventScroll: true});  // the keys then act on this handle
  // The handle keeps its offset from the pointer: set to the pointer, a handle grabbed a few
  // screen pixels off its centre jumped there (a 1 px drag of the rim changed the radius by
  // up to HANDLE_PX / scale frame pixels, the other way).
  const at = handlePoint(target), p = imagePoint(event);
  state.drag = {...target, offset: [at[0] - p[0], at[1] - p[1]], recorded: false};
  state.pressed = target;
  capture(event);
}

// Wire corners and facet ends stay on the frame or its margin: dragged or nudged beyond it,
// a corner lay under the sidebar, where no mouse could take it back. (The droplet's centre
// may leave the frame: a droplet cut by it.)
function withinView(p) {
  const [h, w] = state.geometry.shape, m = FRAME_MARGIN_PX / state.scale;
  return [Math.min(Math.max(p[0], -0.5 - m), h - 0.5 + m),
          Math.min(Math.max(p[1], -0.5 - m), w - 0.5 + m)];
}

// Where a handle is drawn, in frame (row, col).
function handlePoint(t) {
  const g = state.geometry;
  if (t.kind === "center") return g.droplet.center;
  if (t.kind === "radius") return rimPoint(g.droplet.center, g.droplet.radius_px, g.shape);
  return (t.kind === "wire" ? g.wire : g.facet)[t.i];
}

function moveDrag(event) {
  const t = state.drag, g = state.geometry, q = imagePoint(event);
  const p = [q[0] + t.offset[0], q[1] + t.offset[1]];
  if (!t.recorded) {  // a drag is one edit (a press without a move is none)
    recordEdit(`drag of the ${targetName(t)}`);
    t.recorded = true;
  }
  if (t.kind === "center") g.droplet.center = p;
  else if (t.kind === "radius") {
    g.droplet.radius_px = Math.max(0.5, Math.hypot(p[0] - g.droplet.center[0],
                                                   p[1] - g.droplet.center[1]));
  } else if (t.kind === "wire") g.wire[t.i] = withinView(p);
  else if (t.kind === "facet") g.facet[t.i] = withinView(p);
  changed();
}

function insertVertex(i, event) {
  if (mode() !== "edit") return;
  recordEdit(`corner added to the wire polygon after corner ${i + 1}`);
  state.geometry.wire.splice(i + 1, 0, imagePoint(event));
  changed();
}

function removeVertex(i) {
  if (mode() !== "edit") return;
  if (state.geometry.wire.length <= 3) {  // (as Delete says: label-keys.js)
    $("status").textContent = "not removed: the wire polygon keeps at least 3 corners";
    return;
  }
  recordEdit(`removal of ${targetName({kind: "wire", i})}`);
  state.geometry.wire.splice(i, 1);
  changed();
}

function mode() { return document.querySelector("input[name=mode]:checked").value; }
function paintClass() { return Number($("paint-class").value); }

function onPointerDown(event) {
  state.pressed = null;
  // no frame opened (the first one failed), or a frame opening (see setLoading)
  if (!state.geometry || state.loading) return;
  // Only the main button paints: a right-click (its context menu) or a middle-click painted
  // a brush dot of the class or added a polygon corner.
  if (event.button !== 0) return;
  const m = mode();
  if (m === "brush") {
    event.preventDefault();
    capture(event);
    state.draft = {class: paintClass(), brush_px: Number($("brush-radius").value),
                   points: [imagePoint(event)], painting: true};
    renderDraft();
  } else if (m === "polygon") {
    if (!state.draft || state.draft.brush_px !== undefined) {
      state.draft = {class: paintClass(), points: []};
    }
    state.draft.points.push(imagePoint(event));
    renderDraft();
  }
}

function capture(event) {
  $("canvas").setPointerCapture(event.pointerId);
  state.captured.add(event.pointerId);
}

const MAX_BRUSH_POINTS = 10000;  // nwwatch.label.geometry.MAX_POINTS

function onPointerMove(event) {
  if (state.loading) return;  // (see setLoading)
  if (state.drag) { moveDrag(event); return; }
  const d = state.draft;
  if (d && d.painting) {
    const p = imagePoint(event), last = d.points[d.points.length - 1];
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) >= 0.5) {
      d.points.push(p);
      if (d.points.length >= MAX_BRUSH_POINTS) {
        // the server takes at most this many points a brush stroke (geometry.MAX_POINTS):
        // a longer drag goes on as a new stroke from where this one ends
        addStroke({class: d.class, brush_px: d.brush_px, points: d.points});
        state.draft = {...d, points: [p]};
      }
      renderDraft();
    }
  }
}

function onPointerUp(event) {
  state.captured.delete(event.pointerId);
  if (state.loading) return;
  if (state.drag) { state.drag = null; schedulePreview(0); return; }
  const d = state.draft;
  if (d && d.painting) {
    state.draft = null;
    addStroke({class: d.class, brush_px: d.brush_px, points: d.points});
  }
}

// A stroke the user painted (one edit: Undo removes it).
function addStroke(stroke) {
  recordEdit(`${stroke.brush_px === undefined ? "paint polygon" : "brush stroke"} ` +
             `(${CLASS_NAMES[stroke.class]})`);
  state.geometry.strokes.push(stroke);
  changed();
}

function closePolygon() {
  const d = state.draft;
  if (!d || d.brush_px !== undefined) return;
  // a double-click adds its point twice: drop repeated points
  const pts = d.points.filter((p, i) => i === 0 ||
    Math.hypot(p[0] - d.points[i - 1][0], p[1] - d.points[i - 1][1]) > 0.25);
  state.draft = null;
  if (pts.length >= 3) {
    addStroke({class: d.class, points: pts});
  } else {
    renderDraft();
    // dropped without a word before: an area needs three corners
    $("status").textContent = `paint polygon dropped: ${pts.length} corner` +
      `${pts.length === 1 ? "" : "s"}; a polygon needs at least 3`;
  }
}

// ---------------------------------------------------------------- preview (save: label-save.js)
// At most one preview of this page is on the server at a time: a large frame's rasterisation
// takes seconds and most of a gigabyte (docs/labelling.md), and a handle dragged across it
// started one per pause of the pointer. An edit made while one is on its way is previewed
// when that one answers, with the shapes as they are then (the latest edit wins); the answer
// to shapes that changed since it was asked for is not shown.
function schedulePreview(delay = 120) {
  clearTimeout(state.previewTimer);
  setBusy(true);
  state.previewTimer = setTimeout(refreshPreview, delay);
}

async function refreshPreview() {
  clearTimeout(state.previewTimer);  // (an edit's timer still waiting is this request)
  ++state.previewSeq;  // the shapes to preview now: any answer to older ones is stale
  setBusy(true);
  if (state.previewInFlight) return;  // sent by the loop below once that one answers
  state.previewInFlight = true;
  try {
    for (;;) {
      // the frame whose shapes state.geometry holds: while another frame opens, still the
      // one shown (its preview answer is then stale and asked again below)
      const seq = state.previewSeq, shown = shownSeq();
      const index = state.shown ? state.shown.index : state.index;
      let doc = null, error = null;
      try {
        doc = await api(`/api/frames/${index}/preview`, state.geometry);
      } catch (err) {
        error = err;
      }
      // Edited, or another frame opened, meanwhile: ask again for the shapes as they are.
      if (seq !== state.previewSeq || shown !== shownSeq()) continue;
      if (error) {
        $("status").textContent = `error: ${error.message}`;
      } else {
        showPreview(doc);
      }
      setBusy(false);
      return;
    }
  } finally {
    state.previewInFlight = false;
  }
}

function showPreview(doc) {
  $("mask-image").setAttribute("href", doc.mask);
  // The frame's first overlay is drawn: the opening is over (unless an edit said otherwise).
  if (state.openingStatus && $("status").textContent === state.openingStatus) {
    $("status").textContent = "";
  }
  state.openingStatus = null;
  state.facetEdge = doc.facet;
  state.counts = doc.counts;
  const angle = doc.contact_angle_deg;
  $("angle").textContent = angle === null ? "-" : `${angle.toFixed(1)}\u00b0`;
  // why the saved labels would measure another angle than the shapes' (a wire polygon
  // drawn short of the facet line leaves a seam of background)
  $("angle-reason").textContent = [doc.contact_angle_reason, doc.labels_note]
    .filter(Boolean).join("; ");
  $("counts").textContent = Object.entries(doc.counts)
    .map(([k, v]) => `${CLASS_NAMES[k] || k} ${v}`).join(", ") + " px";
  sayFacetEdge(doc.facet);
  if (!state.geometry.facet) render();
}

// Without a facet line of its own the facet is the wire polygon's edge the circle sits on
// most squarely (nwwatch.label.geometry.facet_line), chosen anew at every edit: where two
// edges are nearly level (a droplet on the wire's corner) a drag of a few pixels took the
// other one and the angle jumped (121.8 to 167.3 degrees) without a word. The status line
// says so when the edge changes and the wire kept its corners (a corner added or removed
// renumbers them: the user is reshaping the wire there).
function sayFacetEdge(edge) {
  const wire = state.geometry.wire, before = state.facetWireEdge;
  state.facetWireEdge = null;
  if (state.geometry.facet || !edge || !wire) return;
  const same = (p, q) => p[0] === q[0] && p[1] === q[1];
  const n = wire.length;
  const i = wire.findIndex((p, k) => same(p, edge[0]) && same(wire[(k + 1) % n], edge[1]));
  if (i < 0) return;
  state.facetWireEdge = {i, n};
  if (!before || before.n !== n || before.i === i) return;
  const name = (k) => `corners ${k + 1}-${(k + 1) % n + 1}`;
  $("status").textContent = `the facet is now the wire polygon's edge ${name(i)} (was ` +
    `${name(before.i)}): the angle is read from it; tick \u201cFacet line with its own ` +
    "handles\u201d to keep one facet line";
}

// The frame worked on is in the address (#stem): a reload opens it again, not the first.
function rememberFrame(frame) {
  history.replaceState(null, "", `#${encodeURIComponent(frame.stem)}`);
}

function rememberedFrame() {
  let stem = "";
  try {
    stem = decodeURIComponent(location.hash.slice(1));
  } catch (err) {  // a hash typed by hand that is no URI encoding: the first frame
    return 0;
  }
  const index = state.frames.findIndex((f) => f.stem === stem);
  return index < 0 ? 0 : index;
}
