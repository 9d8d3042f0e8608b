// nwwatch dashboard page: one acquisition at a time, kept up to date by server-sent events.
// EventSource reconnects by itself and sends Last-Event-ID (the cursor of the last update),
// so after a dropped connection the server sends only the rows the page missed.
"use strict";

const COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                "#ff7f0e", "#2ca02c", "#aec7e8"];
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let acqId = params.get("a");
let source = null;
let cursor = null;  // the id of the last update: where a stream opened again resumes
let plot = null;
let shownFolder = null;  // the folder of the acquisition shown, once its data came
// "file#frame" -> {t, angle, unc, valid, code, trend, timeSource, source, frame}
const rows = new Map();
const codeColor = new Map();

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
function fmt(v, digits = 1, unit = "") {
  return v === null || v === undefined ? "—" : `${Number(v).toFixed(digits)}${unit}`;
}
// Times are shown in the browser's time zone, named (the Parquet rows and the report: UTC).
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
function timeText(s) { return s ? `${new Date(s * 1000).toLocaleString()} (${ZONE})` : "—"; }
function colorOf(code) {
  if (!codeColor.has(code)) codeColor.set(code, COLORS[codeColor.size % COLORS.length]);
  return codeColor.get(code);
}

async function loadList() {
  let data;
  try {
    const response = await fetch("api/acquisitions");
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    data = await response.json();
  } catch (err) {  // server stopped or restarting: say so (was an uncaught error every 5 s)
    $("conn").textContent = "server not answering";
    $("conn").className = "pill off";
    return;
  }
  $("mode").textContent = data.live.live ? "live service" : "finished results";
  renderPause(data.live);
  // Damaged results files (a failing disk, a partial copy): their rows, or the quarantine
  // list, are missing from this page. Said, not hidden (an acquisition vanished, and the
  // quarantine read "(none)", while `nwwatch status` named the files).
  const bad = data.unreadable_files || [];
  $("unreadable").hidden = !bad.length;
  const rowFiles = bad.filter((f) => !f.endsWith("quarantine.parquet"));
  $("unreadable").textContent = [
    rowFiles.length ? `${rowFiles.length} results file${rowFiles.length === 1 ? "" : "s"} ` +
      `cannot be read (damaged?): their rows are not on this page ` +
      `(${rowFiles.slice(0, 3).join(", ")}${rowFiles.length > 3 ? ", …" : ""}); ` +
      "`nwwatch ledger rebuild` lists what it can read" : "",
    rowFiles.length < bad.length ? "the quarantine list cannot be read (damaged?): " +
      "no quarantined file is shown; the rows it last left out stay out" : "",
  ].filter(Boolean).join(". ");
  const list = data.acquisitions;
  if (!acqId && list.length) {
    acqId = list[0].id;
    history.replaceState(null, "", `?a=${acqId}`);
  }
  $("empty").hidden = list.length > 0;
  $("acqs").innerHTML = list.map((a) =>
    `<li><a href="?a=${a.id}" class="${a.id === acqId ? "current" : ""}">` +
    `${esc(a.folder.split("/").slice(-2).join("/"))}<small>${a.kind}, ${a.n} row${a.n === 1 ? "" : "s"}` +
    // a folder processed again with another model is one entry per model
    // with the start of its hash: a model retrained into the same file keeps its name
    `${a.model ? `, ${esc(modelText(a))}` : ""}${a.stale ? ", no new file" :
      a.behind ? ", processing behind" : ""}</small></a></li>`)
    .join("");
  // An ID the results do not hold (an old link, a replaced results folder): say so instead
  // of opening a stream the server refuses (404); it connects once the acquisition appears.
  const known = list.some((a) => a.id === acqId);
  // The acquisition shown is gone, but its folder is listed under another ID: a folder with
  // quarantined files only got its first rows (kind and ID change), or it was processed
  // again with another model. Follow the folder (it said "No acquisition" instead).
  const successor = !known && shownFolder !== null ?
    list.find((a) => a.folder === shownFolder) : undefined;
  if (successor) {
    location.replace(`?a=${successor.id}`);
    return;
  }
  // The folder shown got rows of another series since (an update that measures again, a
  // fine-tuned model): this page keeps its own series, and says where the new rows are.
  const current = list.find((a) => a.id === acqId);
  // (of its kind: a folder may hold frames and tomograms, two pages of their own)
  const newer = current ? list.find((a) => a.folder === current.folder && a.id !== acqId &&
    a.kind === current.kind && (a.last_processed || 0) > (current.last_processed || 0)) :
    undefined;
  $("newer").hidden = !newer;
  if (newer) {
    $("newer").innerHTML = `This folder has newer rows, of ${esc(modelText(newer))}: ` +
      `<a href="?a=${newer.id}">open them</a> (this page shows ${esc(modelText(current))}).`;
  }
  $("missing").hidden = !acqId || known;
  if (acqId && !known) {
    $("missing").textContent = `No acquisition "${acqId}" in these results` +
      (list.length ? ": pick one from the list." : ".");
    $("conn").textContent = "not found";
    $("conn").className = "pill off";
  }
  if (acqId && known && !source && !document.hidden) connect();
  if (!acqId) {  // nothing to stream yet: the server answers (was "connecting…" for ever, or
    // "server not answering" after a restart of a server with no rows)
    $("conn").textContent = "waiting for results";
    $("conn").className = "pill";
  }
}

function connect() {
  const since = cursor ? `?since=${encodeURIComponent(cursor)}` : "";
  source = new EventSource(`api/acquisitions/${acqId}/events${since}`);
  source.onopen = () => { $("conn").textContent = "connected"; $("conn").className = "pill"; };
  source.onerror = () => {
    $("conn").className = "pill off";
    if (source.readyState === EventSource.CLOSED) {  // refused (404): EventSource gives up
      $("conn").textContent = "not found";
      source = null;  // loadList connects again once the acquisition is listed
    } else if ($("conn").textContent !== "server not answering") {
      // the list's refresh found the server gone: keep saying so until the stream is back
      $("conn").textContent = "reconnecting…";
    }
  };
  source.addEventListener("update", (e) => { cursor = e.lastEventId; applyUpdate(JSON.parse(e.data)); });
  source.addEventListener("status", (e) => {
    const d = JSON.parse(e.data);
    if (d.summary) renderHeader(d.summary, d.live);
  });
}

function applyUpdate(d) {
  if (d.reset) rows.clear();
  if (d.rows) {
    const r = d.rows;
    // a payload without time sources (one made up in the page): no row counts as timed
    // by its file's modification time
    const timeSources = r.time_source || [];
    for (let i = 0; i < r.t.length; i++) {
      rows.set(`${r.source[i]}#${r.frame[i]}`, {t: r.t[i], angle: r.angle[i], unc: r.unc[i],
        valid: r.valid[i], code: r.code[i], trend: r.trend[i],
        timeSource: timeSources[i] ?? null, source: r.source[i], frame: r.frame[i]});
    }
  }
  renderHeader(d.summary, d.live);
  renderQuarantine(d.quarantined);
  if (d.summary.kind === "tomogram") renderVolumes(d.volumes || []);
  else if (d.summary.kind === "insitu") {
    renderChart(d.latest_overlay, d.latest, d.trend_window, d.live.overlays,
      d.summary.trend_leaves_out_mtime);
  }
  else {  // quarantined files only: no rows (it showed an empty angle chart and a "latest
    // frame" with advice on overlays, also for a tomogram folder)
    $("insitu").hidden = true;
    $("tomo").hidden = true;
  }
}

function card(k, v) { return `<div class="card"><div class="v">${v}</div><div class="k">${k}</div></div>`; }

// Results or the ledger cannot be written (a full disk, a read-only mount): the service
// processes nothing until it can (/metrics: nwwatch_storage_paused). Said, with the error it
// logged; the page showed nothing and, after stale_after_s, asked whether the microscope
// was still writing.
function renderPause(live) {
  const p = live && live.storage_paused;
  $("paused").hidden = !p;
  if (p) {
    $("paused").textContent = "Results cannot be written: the service has paused " +
      `processing since ${timeText(p.since)}${p.reason ? ` (${p.reason})` : ""}. Files wait ` +
      "and are processed once it can write again (free space on the results disk, or make " +
      "it writable); no new row appears here until then.";
  }
}

function renderHeader(s, live) {
  renderPause(live);
  shownFolder = s.folder;
  $("folder").textContent = s.folder;
  // one tab per acquisition can be told apart (a text property: no markup is parsed)
  // (a folder processed by two models is two acquisitions: their model tells the tabs apart)
  document.title = `${s.folder.split("/").slice(-2).join("/")}` +
    `${s.model ? ` (${modelText(s)})` : ""} · nwwatch`;
  const stale = $("stale");
  stale.hidden = !s.stale && !s.behind;
  const mins = ((Date.now() / 1000 - s.last_processed) / 60).toFixed(1);
  if (s.stale) {
    stale.textContent = `No new file from this acquisition for ${mins} min although it was ` +
      "receiving frames: is the microscope still writing here?";
  } else if (s.behind) {
    // its files are there, waiting behind others (a burst into another folder): the
    // question to the microscope was wrong. Its count holds the batch being processed, the
    // queue figure does not: both are said so (the batch's are frames, of any folder).
    const n = s.waiting_files;
    const q = live.queue_depth_files;
    const f = live.in_flight_frames;
    stale.textContent = `No new row from this acquisition for ${mins} min while ${n} of its ` +
      `files ${n === 1 ? "is" : "are"} waiting or in the batch being processed: the service ` +
      `is behind (all folders: ${fmt(q, 0)} file${q === 1 ? "" : "s"} waiting, ${fmt(f, 0)} ` +
      `frame${f === 1 ? "" : "s"} in the batch being processed).`;
  }
  const st = s.stats || {};
  const c = [card("rows", s.n)];
  if (s.kind === "insitu") {
    c.push(card("valid angles", `${st.n_valid ?? 0} / ${st.n ?? 0}`));
    c.push(card("median angle (IQR)", st.median_deg == null ? "—" :
      `${fmt(st.median_deg)}° <small>(${fmt(st.q25_deg)}–${fmt(st.q75_deg)})</small>`));
    c.push(card("mean ± sd", st.mean_deg == null ? "—" : `${fmt(st.mean_deg)} ± ${fmt(st.sd_deg)}°`));
  }
  const unit = s.kind === "tomogram" ? "volume" : "frame";
  c.push(card(`${unit}s/s (last min)`, fmt(s.frames_per_s, 2)));
  c.push(card(`processing / ${unit}`, fmt(s.proc_ms_median, 0, " ms")));
  if (live.live) {
    // the service's figures, of every watched folder: not this acquisition's alone (a
    // tomogram page showed the in-situ frames' latency as if it were its volumes')
    c.push(card("latency p50 / p95 (all folders)", live.latency_p50_s == null ? "—" :
      `${fmt(live.latency_p50_s, 2)} / ${fmt(live.latency_p95_s, 2)} s`));
    c.push(card("queue / in flight (all folders)",
      `${fmt(live.queue_depth_files, 0)} / ${fmt(live.in_flight_frames, 0)}`));
  } else {
    c.push(card("in flight (ledger)", fmt(live.pending_files, 0)));
  }
  c.push(card("quarantined", s.quarantined));
  c.push(card("model · provider", `<small title="sha256 ${esc(s.model_sha256 ?? "—")}">` +
    `${esc(s.model == null ? "—" : modelText(s))} · ${esc(s.provider ?? "—")}</small>`));
  c.push(card("last row", `<small>${timeText(s.last_processed)}</small>`));
  $("cards").innerHTML = c.join("");
}

// A model's name and the start of its hash, and the measurement version (as nwwatch status
// and report write them): one model's series under two versions are told apart.
function modelText(s) {
  const text = s.model_sha256 ? `${s.model} ${s.model_sha256.slice(0, 12)}` : s.model;
  return s.measurement_version ? `${text}, measurement ${s.measurement_version}` : text;
}

// A quarantined file's path within the acquisition shown (a time tree's files share their
// names: Hour_00/Minute_00/Second_01/Frame_0001.tif, not three rows of Frame_0001.tif).
function inFolder(path) {
  return shownFolder && path.startsWith(`${shownFolder}/`) ?
    path.slice(shownFolder.length + 1) : path.split("/").pop();
}

function renderQuarantine(q) {
  $("qcount").textContent = q.length ? `(${q.length})` : "(none)";
  $("quarantine").innerHTML = q.length ? "<tr><th>file</th><th>reason</th><th>error</th><th>attempts</th></tr>" +
    q.map((x) => `<tr><td>${esc(inFolder(x.path))}</td>` +
      `<td>${esc(x.reason)}${x.gone ? "; deleted since, nothing to do" : ""}</td>` +
      `<td>${esc(x.error_type)}</td><td>${x.attempts}</td></tr>`).join("") : "";
}

function errorBars(u) {
  const ctx = u.ctx;
  const xs = u.data[0];
  const unc = u._unc;
  ctx.save();
  ctx.lineWidth = 1.5 * devicePixelRatio;
  // the valid angles in the trend (blue), and those it leaves out (grey), each their own
  for (const [index, color] of [[1, "rgba(31,95,191,0.45)"], [u._apart, "rgba(138,143,152,0.5)"]]) {
    if (index == null) continue;
    const ys = u.data[index];
    ctx.strokeStyle = color;
    ctx.beginPath();
    for (let i = 0; i < xs.length; i++) {
      if (ys[i] == null || unc[i] == null) continue;
      const x = u.valToPos(xs[i], "x", true);
      ctx.moveTo(x, u.valToPos(ys[i] - unc[i], "y", true));
      ctx.lineTo(x, u.valToPos(ys[i] + unc[i], "y", true));
    }
    ctx.stroke();
  }
  ctx.restore();
}

// uPlot's time labels put a second line under a tick: the date (the first tick, and where the
// day changes) or the hour (where it changes). Lines of neighbouring ticks ran into each
// other ("11/21/26 11:59pm11/22 12:00am" on a seconds-scale chart that crosses midnight).
// A second line that would touch one already kept is left out, kept in this order: the
// day's changes, the first tick's date, the hours, each from the left. A line names the
// hour (and minute) of the ticks up to the next line: where the first change of hour or
// minute runs into the first tick's line, that change keeps its line, written as the first
// tick's (with the date), and the first tick loses its own (kept, the change's was left out
// and "12:59am" under :59 named the ticks :00-:15 of 1:00am); where a change of day leaves
// that moved line out, the first tick keeps its own. ``firstLabel(k)``: uPlot's label of
// tick k written as a first tick's.
function spacedTimeLabels(u, splits, labels, firstLabel) {
  const lines = labels.map((l) => (l == null ? [l] : String(l).split("\n")));
  const day = (t) => new Date(t * 1000).toDateString();  // uPlot's dates: local time
  const dayChange = (k) => k > 0 && day(splits[k]) !== day(splits[k - 1]);
  const ctx = spacedTimeLabels.ctx || (spacedTimeLabels.ctx =
    document.createElement("canvas").getContext("2d"));
  ctx.font = u.axes[0].font[0];  // in device pixels
  const gapPx = 6;
  const extent = (k) => {
    const x = u.valToPos(splits[k], "x");
    const half = ctx.measureText(lines[k][1]).width / devicePixelRatio / 2 + gapPx / 2;
    return [x - half, x + half];
  };
  const touch = ([l1, r1], [l2, r2]) => l1 < r2 && r1 > l2;
  const kept = [];
  const place = (k) => {  // keeps tick k's second line unless it touches one kept
    if (lines[k].length < 2) return false;
    const span = extent(k);
    if (kept.some((other) => touch(span, other))) {
      lines[k] = [lines[k][0]];
      return false;
    }
    kept.push(span);
    return true;
  };
  const ticks = lines.map((_, k) => k);
  const change = lines.findIndex((l, k) => k > 0 && l.length > 1);
  const moves = change > 0 && lines[0].length > 1 && !dayChange(change) && firstLabel
    && touch(extent(0), extent(change));
  ticks.filter(dayChange).forEach(place);
  let lead = 0;  // the tick whose line carries the date
  if (moves) {
    // the first tick gives its line up only once the moved one is kept: where a change of
    // day leaves the moved line out, the first tick keeps its own (else the ticks before
    // midnight had neither date nor hour)
    const own = [lines[0], lines[change]];
    lines[0] = [lines[0][0]];
    lines[change] = String(firstLabel(change)).split("\n");
    if (place(change)) {
      lead = change;
    } else {
      [lines[0], lines[change]] = own;
    }
  }
  if (lead === 0) place(0);
  ticks.filter((k) => k > 0 && k !== lead && !dayChange(k)).forEach(place);
  return lines.map((l) => (l[0] == null ? l[0] : l.join("\n")));
}

// A line between the angles and the refused lane below them.
function laneDivider(u) {
  if (!u._yRange || u._yRange[0] >= u._yMin) return;
  const y = Math.round(u.valToPos(u._yMin, "y", true));
  u.ctx.save();
  u.ctx.strokeStyle = "#9ca3af";
  u.ctx.lineWidth = devicePixelRatio;
  u.ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
  u.ctx.beginPath();
  u.ctx.moveTo(u.bbox.left, y);
  u.ctx.lineTo(u.bbox.left + u.bbox.width, y);
  u.ctx.stroke();
  u.ctx.restore();
}

// The refused lane's title, beside the lane: uPlot centres an axis label on the whole plot's
// height, where "refused" stood beside the angles. The axis keeps an empty label (uPlot
// keeps the room for it) and this draws the title there, centred on the lane.
const LANE_TITLE = "refused";
function laneTitle(u) {
  const axis = u.axes.find((a) => a.scale === "refused");
  if (!axis || axis._lpos == null || !u._yRange || u._yRange[0] >= u._yMin) return;
  const top = u.valToPos(u._yMin, "y", true);
  const bottom = u.bbox.top + u.bbox.height;
  const ctx = u.ctx;
  ctx.save();
  ctx.font = axis.labelFont[0];  // in device pixels
  ctx.fillStyle = axis.stroke(u, u.axes.indexOf(axis));
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";  // as uPlot sets a right-hand axis label
  ctx.translate(Math.round((axis._lpos + axis.labelGap) * devicePixelRatio),
                Math.round((top + bottom) / 2));
  ctx.rotate(Math.PI / 2);
  ctx.fillText(LANE_TITLE, 0, 0);
  ctx.restore();
}

// The time span picked by dragging across the chart, kept while rows arrive (and when the
// chart is built again for a new reason code); null: every row. A double click clears it.
let xZoom = null;
// The times the axis spans when nothing is dragged: [first, last] of the rows charted whose
// time places them (renderChart); null: the data's own.
let xSpan = null;

// Margin each side of the time axis, in seconds, for times from ``first`` to ``last``.
function timePad(first, last) { return Math.max(1, 0.02 * (last - first)); }

// The time axis spans the data with a small margin (computed here from the x values:
// uPlot's automatic range stayed empty when the plot was created with its first data), or
// the span dragged across. New rows (setData) ask again for the span last shown, which
// then no longer reaches the newest rows: that is no drag (taken for one, the axis stayed
// at the first rows' span while later points fell outside it). A drag asks for a span
// narrower than the data's that was never shown.
function timeRange(u, min, max) {
  const x = u.data[0];
  const [first, last] = xSpan || [x[0], x[x.length - 1]];
  const shownBefore = u._xShown && min === u._xShown[0] && max === u._xShown[1];
  if (!shownBefore && x.length && min != null && max != null && max > min
      && (min > first || max < last)) {
    xZoom = [min, max];
  }
  let range;
  if (xZoom) range = xZoom;
  else if (!x.length) range = [Date.now() / 1000 - 60, Date.now() / 1000];
  else {
    const pad = timePad(first, last);
    range = [first - pad, last + pad];
  }
  u._xShown = range;
  return range;
}

function renderChart(overlay, latest, trendWindow, overlaySetting, mtimeApart) {
  $("insitu").hidden = false;
  $("tomo").hidden = true;
  // A row without an acquisition time (null acquired_at) has no place on the time axis (it
  // sorted as 1970 and squeezed the rest into one column): counted in the legend instead.
  const everything = [...rows.values()];
  const timed = everything.filter((r) => r.t != null).sort((a, b) => a.t - b.t || a.frame - b.frame);
  const untimed = everything.length - timed.length;
  // Frames timed by their file's modification time: where others declare their time the
  // server's trend leaves them out (a copy's time lands anywhere among the real ones), and
  // they are drawn hollow and grey, counted in the legend.
  const byMtime = timed.filter((r) => r.timeSource === "mtime").length;
  const apart = (r) => mtimeApart && r.timeSource === "mtime";
  // The time axis spans the declared times then: a modification time 12 h before them (a
  // copy's) or after them (a file written now, among frames stamped earlier) stretched it
  // and squeezed the real frames into one column. Those outside that span (and its margin)
  // are left off the chart, counted in the legend.
  const declared = timed.filter((r) => !apart(r));
  xSpan = declared.length ? [declared[0].t, declared[declared.length - 1].t] : null;
  const pad = xSpan ? timePad(xSpan[0], xSpan[1]) : 0;
  const all = xSpan ? timed.filter((r) => !apart(r) || (r.t >= xSpan[0] - pad &&
    r.t <= xSpan[1] + pad)) : timed;
  const offSpan = timed.length - all.length;
  const codes = [...new Set(all.filter((r) => !r.valid).map((r) => r.code))].sort();
  const x = all.map((r) => r.t);
  const angle = all.map((r) => (r.valid && !apart(r) ? r.angle : null));
  const apartAngle = all.map((r) => (r.valid && apart(r) ? r.angle : null));
  const unc = all.map((r) => (r.valid ? r.unc : null));
  const trend = all.map((r) => (r.valid && !apart(r) ? r.trend : null));
  // The angle axis spans the valid angles (with their uncertainty) plus a margin, within
  // 0-180 degrees. Refused frames have no angle: they sit in a lane of their own below the
  // angle axis (one row of markers per reason, on their own "refused" scale and axis), so
  // that they cannot be read as angles (they sat at about 5-10 degrees on the angle axis).
  // A loop, not Math.min(...array): spreading some 120,000 values (a long acquisition)
  // overflows the call stack and the chart stayed empty.
  let lo = Infinity, hi = -Infinity;
  for (const r of all) {
    if (!r.valid) continue;
    lo = Math.min(lo, r.angle - (r.unc || 0));
    hi = Math.max(hi, r.angle + (r.unc || 0));
  }
  const yMin = lo < Infinity ? Math.max(0, Math.floor((lo - 10) / 10) * 10) : 0;
  const yMax = hi > -Infinity ? Math.min(180, Math.ceil((hi + 5) / 10) * 10) : 180;
  // the lane's share of the plot's height; the y scale reaches below yMin by as much
  const laneFrac = codes.length ? Math.min(0.4, 0.06 + 0.06 * codes.length) : 0;
  const yLow = yMin - (yMax - yMin) * laneFrac / (1 - laneFrac);
  // "refused" scale 0-1 over the whole plot: row k of the lane at laneRow(k)
  const laneRow = (k) => laneFrac * (codes.length - k - 0.5) / codes.length;
  const refused = codes.map((c, k) => all.map((r) => (!r.valid && r.code === c ? laneRow(k) : null)));
  const nApart = apartAngle.filter((v) => v != null).length;
  const data = [x, angle, trend, ...(mtimeApart ? [apartAngle] : []), ...refused];
  const nValid = angle.filter((v) => v != null).length + nApart;
  $("chart").dataset.points = String(nValid);
  $("chart").dataset.apart = String(nApart);
  $("chart").dataset.mtime = String(byMtime);
  $("chart").dataset.refused = String(all.length - nValid);
  $("chart").dataset.untimed = String(untimed);
  $("chart").dataset.offSpan = String(offSpan);
  // Frames of one acquisition time (a stack's pages without times of their own, times to
  // the whole second in a faster series: docs/io.md): the chart draws each such group in one
  // column, which the legend says (as the report does).
  let shared = 0;
  for (let i = 0; i < x.length; i++) {
    if ((i > 0 && x[i] === x[i - 1]) || (i + 1 < x.length && x[i] === x[i + 1])) shared++;
  }
  $("chart").dataset.shared = String(shared);
  const series = [
    {label: "time"},
    {label: "angle (valid)", stroke: "#1f5fbf", width: 0, points: {show: true, size: 6, fill: "#1f5fbf"}},
    {label: "rolling median", stroke: "#f28e2b", width: 2, spanGaps: true, points: {show: false}},
    ...(mtimeApart ? [{label: "angle (valid, file modification time: not in the trend)",
      stroke: "#8a8f98", width: 0,
      points: {show: true, size: 7, width: 1.5, fill: "#fff", stroke: "#8a8f98"}}] : []),
    ...codes.map((c) => ({label: c, scale: "refused", stroke: colorOf(c), width: 0,
      points: {show: true, size: 8, fill: colorOf(c), stroke: colorOf(c)}})),
  ];
  // what the time axis is: acquisition times, some or all of them files' modification times
  const timeWords = !byMtime ? "" : byMtime === timed.length ? ", file modification time" :
    ", some from file modification time";
  const key = series.map((s) => s.label).join("|") + timeWords;
  const width = Math.max(400, $("chart").clientWidth - 14);
  $("chart").dataset.angleMin = String(yMin);
  if (plot) { plot._yRange = [yLow, yMax]; plot._yMin = yMin; }
  if (!plot || plot._key !== key) {
    if (plot) plot.destroy();
    const axes = [{label: `acquisition time (${ZONE}${timeWords})`},
      // no angle ticks (nor grid lines) in the refused lane: from yMin up only
      {label: "contact angle (°)", values: (u, v) => v.map((a) => `${+a.toFixed(6)}°`),
       splits: (u, i, min, max, incr) => {
         const out = [];
         for (let k = Math.ceil(u._yMin / incr); k * incr <= max + 1e-9; k++) out.push(k * incr);
         return out;
       }}];
    if (codes.length) {
      axes.push({scale: "refused", side: 1, label: "", grid: {show: false},
        splits: () => codes.map((c, k) => laneRow(k)), values: () => codes,
        size: 30 + 7 * Math.max(...codes.map((c) => c.length))});
    }
    plot = new uPlot({width, height: 380, series, legend: {show: false},
      scales: {x: {time: true, range: timeRange}, y: {range: (u) => u._yRange || [0, 180]},
               refused: {range: [0, 1]}},
      axes, hooks: {draw: [errorBars, laneDivider, laneTitle]}}, data, $("chart"));
    plot._key = key;
    // uPlot's own time labels (its table of formats), spaced: a function set here wraps
    // them, which the axis' options cannot (they replace them)
    const timeLabels = plot.axes[0].values;
    plot.axes[0].values = (u, splits, ...rest) =>
      spacedTimeLabels(u, splits, timeLabels(u, splits, ...rest),
        // uPlot writes the first of the ticks it is given with the date
        (k) => timeLabels(u, splits.slice(k), ...rest)[0]);
    // before uPlot's own handler (capture), which scales to the data's extent
    plot.root.addEventListener("dblclick", () => { xZoom = null; }, true);
    plot._yRange = [yLow, yMax];
    plot._yMin = yMin;
    plot.setData(data);
  } else {
    plot.setData(data);
  }
  plot._unc = unc;
  plot._apart = mtimeApart ? 3 : null;  // the series of the angles the trend leaves out
  window.nwPlot = plot;
  plot.redraw();
  $("legend").innerHTML = `<span style="--c:#1f5fbf">valid ${nValid - nApart} (bars: uncertainty)</span>` +
    `<span style="--c:#f28e2b">rolling median of the last ${trendWindow} valid` +
    `${mtimeApart ? " with a declared time" : ""}</span>` +
    (mtimeApart ? `<span class="hollow" style="--c:#8a8f98">timed by file modification ` +
      `time: ${byMtime} (left out of the trend; valid ones hollow)</span>` :
      byMtime ? `<span class="untimed">timed by file modification time: ${byMtime}` +
      `${byMtime === timed.length ? " (all)" : ""}</span>` : "") +
    (offSpan ? `<span class="untimed">timed by file modification time outside the ` +
      `declared times: ${offSpan} (not plotted)</span>` : "") +
    codes.map((c) => `<span style="--c:${colorOf(c)}">${esc(c)}: ` +
      `${all.filter((r) => r.code === c).length}</span>`).join("") +
    (untimed ? `<span class="untimed">no acquisition time: ${untimed} (not plotted)</span>` : "") +
    (shared ? `<span class="untimed">sharing one acquisition time with others: ${shared} ` +
      "(drawn in one column)</span>" : "");
  // the frame the server names and describes as the latest, with that frame's overlay
  // picture: captioned from the same update, not looked up among the rows the page holds
  // (a frame missing there left the caption of an earlier frame above the new picture)
  if (latest) {
    $("latest").innerHTML = `${esc(latest.source)} frame ${latest.frame}: ` +
      (latest.valid ? `<b>${fmt(latest.angle)}° ± ${fmt(latest.unc)}°</b>` :
        `refused (<b>${esc(latest.code)}</b>)`) + ` at ${timeText(latest.t)}`;
  } else {
    // no row left (its only file overwritten with a broken one, quarantined): the caption
    // and picture of a row that no longer counts stayed, with advice on pictures settings
    $("latest").textContent = "—";
    $("latest-overlay").dataset.href = "";
    $("latest-overlay").dataset.note = "no row";
    $("latest-overlay").innerHTML = "<p class=\"muted\">No row: no latest frame.</p>";
    return;
  }
  renderOverlay(overlay, latest, overlaySetting);
}

// Why the latest frame has no overlay picture, from the service's [output] overlays (null:
// not known, a results folder served by `nwwatch dashboard`). An ok frame under "flagged"
// was told that pictures are written with "flagged" and that its own could not be written.
function missingOverlayNote(latest, setting) {
  if (setting === "flagged" && latest && latest.status === "ok") {
    return "<p class=\"muted\">No overlay picture of this frame: its status is ok, and the " +
      "service draws only the frames whose status is not ok " +
      "(<code>[output] overlays = \"flagged\"</code>); <code>\"all\"</code> draws every " +
      "frame.</p>";
  }
  if (setting === "none") {
    return "<p class=\"muted\">No overlay picture: the service writes none " +
      "(<code>[output] overlays = \"none\"</code>, the default); <code>\"flagged\"</code> " +
      "draws the frames whose status is not ok, <code>\"all\"</code> every frame.</p>";
  }
  return "<p class=\"muted\">No overlay picture of this frame. The service writes them with " +
    "<code>[output] overlays = \"all\"</code> (every frame) or <code>\"flagged\"</code> " +
    "(frames whose status is not ok); <code>nwwatch replay … --overlays DIR</code> for a replay. " +
    "With pictures on, one that could not be written is in the service's log " +
    "(<code>overlay_write_failed</code>).</p>";
}

// Longer side, in device pixels, of the picture the panel asks for: its width or 70 % of
// the window's height (its CSS limits), rounded up to 256 px so that a few sizes are cached.
function overlayPreviewPx(box) {
  const css = Math.max(box.clientWidth || 1024, 0.7 * window.innerHeight);
  const px = Math.ceil(css * (window.devicePixelRatio || 1) / 256) * 256;
  return Math.min(8192, Math.max(256, px));
}

// The latest frame's overlay picture, scaled into its panel; a click opens the full-size
// file. The panel loads a copy scaled by the server to its size (?max_px): a 4096² frame's
// overlay is a 22 MB PNG. Set only when it changes, so that a frame's picture does not
// flicker on each update.
function renderOverlay(overlay, latest, setting) {
  const box = $("latest-overlay");
  // each segment encoded whole: a folder named "qa#1" or "qa?x" must not end the path
  const href = overlay ? `results/${overlay.split("/").map(encodeURIComponent).join("/")}` : "";
  // without a picture the note depends on the frame (its status) as well
  const note = overlay ? "" : missingOverlayNote(latest, setting);
  if (box.dataset.href === href && box.dataset.note === note) return;
  box.dataset.href = href;
  box.dataset.note = note;
  const src = overlay ? `${href}?max_px=${overlayPreviewPx(box)}` : "";
  box.innerHTML = overlay ?
    `<a href="${esc(href)}" target="_blank" title="open the full-size picture">` +
    `<img src="${esc(src)}" alt="measurement overlay of the latest frame"></a>` : note;
  const img = box.querySelector("img");
  // a row naming a picture that is gone or unreadable (results folder copied without it):
  // say so instead of a broken-image icon
  if (img) img.addEventListener("error", () => {
    box.innerHTML = `<p class="muted">The overlay picture <code>${esc(overlay)}</code> ` +
      "could not be loaded (missing or unreadable under the results folder).</p>";
  });
}

// The volume picked by a click or key (its source file), kept while rows arrive; null: the
// latest.
let pickedSource = null;
let volumesKey = null;

function renderVolumes(vols) {
  $("insitu").hidden = true;
  $("tomo").hidden = false;
  // An update is sent whenever any acquisition of the results gets rows: rebuilding an
  // unchanged table reset the picked volume to the latest and dropped the keyboard focus.
  const key = JSON.stringify(vols);
  if (key === volumesKey) return;
  volumesKey = key;
  const cols = ["status", "reason_code", "solid_fraction", "porosity_envelope", "pore_count",
                "uncertain_fraction", "threshold_agreement"];
  $("volumes").innerHTML = "<tr><th>file</th>" + cols.map((c) => `<th>${c.replaceAll("_", "_<wbr>")}</th>`).join("") + "</tr>" +
    vols.map((v, i) => `<tr class="pick" data-i="${i}"><td>${esc(v.source.split("/").pop())}</td>` +
      // names break after underscores, a list of codes after its commas: the table fits
      cols.map((c) => `<td>${typeof v[c] !== "number" ? esc(v[c]).replaceAll(",", ",<wbr>") :
        fmt(v[c], Number.isInteger(v[c]) ? 0 : 3)}</td>`).join("") +
      "</tr>").join("");
  const show = (i, picked) => {
    if (picked) pickedSource = vols[i].source;
    // the mask named in the URL: the same index is another volume once a file is processed
    // again (its newest row sorts last), and the same URL kept the old picture
    const img = $("mask");
    // a row naming a mask that is gone or unreadable: say so instead of a broken-image icon
    img.onerror = () => {
      img.hidden = true;
      $("mask-missing").hidden = false;
      $("mask-missing").textContent = `The mask ${vols[i].mask_path || ""} could not be ` +
        "loaded (missing or unreadable under the results folder).";
    };
    img.onload = () => { img.hidden = false; $("mask-missing").hidden = true; };
    img.src = `api/acquisitions/${acqId}/mask/${i}.png?m=${encodeURIComponent(vols[i].mask_path || "")}`;
    $("mask-name").textContent = vols[i].source.split("/").pop();
    // Why a mask is suspect (one sentence per reason code); nothing for an ok one.
    $("mask-reason").textContent = vols[i].reason ? `${vols[i].status}: ${vols[i].reason}` : "";
    document.querySelectorAll("#volumes tr.pick").forEach((tr) =>
      tr.setAttribute("aria-selected", String(Number(tr.dataset.i) === i)));
  };
  // Rows are picked by click or, focused with Tab, by Enter or Space (keyboard-only use).
  document.querySelectorAll("#volumes tr.pick").forEach((tr) => {
    tr.tabIndex = 0;
    tr.addEventListener("click", () => show(Number(tr.dataset.i), true));
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); show(Number(tr.dataset.i), true); }
    });
  });
  const picked = pickedSource === null ? -1 : vols.findIndex((v) => v.source === pickedSource);
  if (vols.length) show(picked >= 0 ? picked : vols.length - 1);
}

// A browser opens at most 6 connections to one server and each open stream holds one: a
// seventh dashboard tab did not load at all. A hidden tab closes its stream and, shown
// again, opens it from its cursor (only the rows it missed).
document.addEventListener("visibilitychange", () => {
  if (document.hidden && source) {
    source.close();
    source = null;
    $("conn").textContent = "paused (tab hidden)";
    $("conn").className = "pill off";
  } else if (!document.hidden) {
    loadList();
  }
});

loadList();
setInterval(loadList, 5000);
window.addEventListener("resize", () => plot && plot.setSize({width: Math.max(400, $("chart").clientWidth - 14), height: 380}));
