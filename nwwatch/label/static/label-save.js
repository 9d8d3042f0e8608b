// nwwatch label: Save, and what the page does when the server refuses a save (409: the frame
// was saved from another tab or session after this page opened it). The shapes stay on the
// page, marked unsaved; the user chooses to overwrite the other version or to open it.
// Loaded after label.js (state, api, drawing).
"use strict";

async function save() {
  // base: the saved file this geometry started from; the server refuses the save (409)
  // when another tab or session saved the frame since, instead of overwriting its work.
  await queueSave(() => state.savedToken);
}

// The user's deliberate choice after a refused save: write this page's shapes over the
// version the refusal named. A save made by someone else after that refusal is not the
// version the user chose to replace: the server refuses this one too, and says so again.
async function overwriteSave() {
  await queueSave(() => (state.conflict ? state.conflict.token : null));
}

// One save at a time: sent together, a second Ctrl+S carried the token the first one
// replaced, and its 409 said another tab had saved the frame when this page had. A save
// asked for while one is on its way is sent when that one has answered, with the base read
// then, and not at all if a frame (even this one) was opened meanwhile. With none on its
// way it is sent at once, with the shapes as they are now.
let saveQueue = null;  // the saves on their way and waiting, in order; null when none
function queueSave(baseOf) {
  const seq = shownSeq();
  const run = (waited) => {  // (a frame opening since it was asked: not sent either)
    const base = baseOf();
    if (seq !== shownSeq() || base === null || (waited && state.loading)) return undefined;
    return sendSave(base);
  };
  const queued = Promise.resolve(saveQueue ? saveQueue.then(() => run(true)) : run(false))
    .catch((err) => { $("status").textContent = `save failed: ${err.message}`; })
    .finally(() => { if (saveQueue === queued) saveQueue = null; });
  saveQueue = queued;
  return queued;
}

// The user's other choice: drop this frame's changes and open what is saved now.
async function openSavedVersion() {
  const dirty = state.dirty;
  state.dirty = false;  // the button says the changes are dropped: openFrame must not ask
  await openFrame(state.index);
  if (state.conflict) state.dirty = dirty;  // it failed (the bar is still up): still unsaved
}

// The opening of the frame shown (0: none): a frame that failed to open leaves it as it was.
function shownSeq() { return state.shown ? state.shown.seq : 0; }

async function sendSave(base) {
  // While a frame opens, the geometry is still the previous frame's: saving it now wrote
  // those shapes under the new frame's name.
  if (state.loading) {
    $("status").textContent = "not saved: this frame's shapes have not loaded yet";
    return;
  }
  if (!state.shown) {
    $("status").textContent = "not saved: no frame is open";
    return;
  }
  setBusy(true);
  $("status").textContent = "saving...";
  state.mergeOpen = null;  // an arrow press after the save is a new edit: undone, the saved
                           // shapes come back, not those before the presses saved
  // The frame whose shapes these are (state.index is that frame's whenever none is loading).
  const edits = state.edits, index = state.shown.index, stem = state.frames[index].stem;
  const seq = shownSeq();  // this frame as opened: a late answer is not another opening's
  // these very shapes are on their way: leaving the frame now loses nothing (openFrame asked
  // "Discard the unsaved changes?" of a save that then went through)
  state.savingEdits = {seq, edits};
  try {
    // frame: which frame these shapes are of; a server started again with other frames
    // refuses them rather than write them under its frame of the same place in the list.
    const doc = await api(`/api/frames/${index}/save?base=${encodeURIComponent(base)}` +
                          `&frame=${encodeURIComponent(state.frames[index].key)}`,
                          state.geometry);
    state.frames[index].saved = true;
    labelOption(index);
    document.body.dataset.saved = doc.stem;
    if (seq === shownSeq()) {  // (a frame, even this one, may have been opened since)
      state.savedToken = doc.saved_token;
      state.dirty = state.edits !== edits;  // an edit made while saving is not saved yet
      showConflict(null);
      $("frame-origin").textContent = "saved labels";
      $("frame-origin").className = "tag saved";
      // frames whose broken geometry file truth.parquet could not take a row from
      const truth = doc.truth_note ? `; ${doc.truth_note}` : "";
      $("status").textContent = (state.dirty ? `saved ${doc.stem}; newer changes unsaved`
        : `saved ${doc.stem}`) + truth;
    }
  } catch (err) {
    if (seq !== shownSeq()) {
      $("status").textContent = `save of ${stem} failed: ${err.message}`;
    } else if (err.status === 409 && err.doc && err.doc.conflict) {
      showConflict(err.doc);
      $("status").textContent = "not saved: see above the frame";
    } else {
      $("status").textContent = `save failed: ${err.message}`;
    }
  }
  state.savingEdits = null;
  setBusy(false);
}

// doc: the server's 409 answer ({error, saved_token}); null hides the bar.
function showConflict(doc) {
  state.conflict = doc ? {token: doc.saved_token} : null;
  if ($("conflict").hidden !== !doc) {
    $("conflict").hidden = !doc;
    if (state.geometry) { layout(); render(); }  // the bar took or gave back room: refit
  }
  if (!doc) return;
  const theirs = doc.saved_token ? "the saved version" : "the model's proposal";
  const [mine, other] = doc.saved_token
    ? ["Overwrite with my shapes", "Open the saved version"]
    : ["Save my shapes", "Open the frame again"];
  $("conflict-overwrite").textContent = mine;
  $("conflict-theirs").textContent = `${other} (drops my changes)`;
  $("conflict-text").textContent = `${doc.error} Your changes are still on this page. ` +
    `\u201c${mine}\u201d writes them (nothing saved meanwhile is replaced without asking ` +
    `again); \u201c${other}\u201d shows ${theirs} instead and drops your changes.`;
}
