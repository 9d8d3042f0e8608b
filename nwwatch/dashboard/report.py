"""``nwwatch report RESULTS --out report.html``: a static page for the lab notebook.

One section per acquisition of a results folder (from the service, ``replay`` or a backfill):
for in-situ folders the contact angle against acquisition time (the dashboard's plot, as a
PNG; rows without an acquisition time are listed under it instead) and the angle statistics —
n valid / refused by reason code, median, IQR, mean ± sd; for
tomogram folders the volume rows (status with its reason code and reason) and the central
slices of each mask; the quarantined files.
The HTML embeds its pictures (one file to mail or archive); the same PNGs are written beside it
in ``<name>_files/``.
"""

from __future__ import annotations

import base64
import errno
import html
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

from nwwatch import __version__
from nwwatch.dashboard.data import (
    Acquisition,
    ResultsStore,
    acquisition_summary,
    frame_series,
    quarantined_gone,
)
from nwwatch.dashboard.stats import TREND_WINDOW, outside_declared_span, rolling_median
from nwwatch.options import OutputFile, say
from nwwatch.paths import acquisition_named
from nwwatch.pathtext import path_text

#: Readings of the results folder while files vanish under it (a compaction running).
_READ_TRIES = 5
#: At most this many masks of a tomogram folder are drawn (the table lists all volumes;
#: which: :func:`_masks_to_draw`, the page names those left out).
MAX_MASKS = 6
#: A volume's status comes with its reason code and reason: "suspect" alone does not say
#: whether the mask collapsed or only lacks validation.
_VOLUME_COLUMNS = ("status", "reason_code", "reason", "solid_fraction", "porosity_envelope",
                   "pore_count", "surface_area", "uncertain_fraction", "threshold_agreement")


def _surface_area(row: dict) -> str:
    """The surface area with its unit: nm² when the volume declares its voxel size, else
    px² (a "—" alone read as no surface)."""
    for column, unit in (("surface_area_nm2", "nm²"), ("surface_area_px2", "px²")):
        if row.get(column) is not None:
            return f"{_fmt(row[column])} {unit}"
    return "—"
#: A table still wider than the page (long values) scrolls by itself, not the whole page.
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;max-width:1000px;margin:24px auto;
padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;display:block;max-width:100%;overflow-x:auto}
td{overflow-wrap:anywhere}
@media print{table{display:table;width:100%;table-layout:fixed;font-size:10px}
th,td{padding:2px 3px;overflow-wrap:anywhere}}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f1f3f6}
img{max-width:100%}.muted{color:#6b7280}
img.mask{min-height:240px;object-fit:contain;object-position:left;image-rendering:pixelated;background:#000}
code{font-size:13px}.warn{color:#b42318;font-weight:600}
"""


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _img(data: bytes, alt: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return (f'<img{cls} alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode()}">')


def _slug(acq: Acquisition) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(acq.folder).name)[:40]
    return f"{name}-{acq.id}"


def _span(t: np.ndarray) -> str:
    """First – last acquisition time (UTC, ``t`` in s since the epoch); the last one's date
    only when it differs from the first's (an acquisition past midnight); milliseconds when
    they are less than a minute apart and one of them is not a whole second (seconds cut
    "08:00:00.900 – 08:00:01.680" to "08:00:00 – 08:00:01", a 0.78 s burst read as one
    second)."""
    first, last = (datetime.fromtimestamp(x, UTC) for x in (t.min(), t.max()))
    if last != first and (last - first).total_seconds() < 60 \
            and (first.microsecond or last.microsecond):
        end = f"{last:%H:%M:%S}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M:%S}"
        return (f"{first:%Y-%m-%d %H:%M:%S}.{first.microsecond // 1000:03d} – "
                f"{end}.{last.microsecond // 1000:03d} UTC")
    end = f"{last:%H:%M:%S}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M:%S}"
    return f"{first:%Y-%m-%d %H:%M:%S} – {end} UTC"


def _providers(summary: dict) -> str:
    """The execution provider of the series' rows; several with their rows, most first (a
    series run partly on a GPU and partly on the CPU: their angles differ slightly)."""
    providers = summary.get("providers") or {}
    if len(providers) < 2:
        return _fmt(summary["provider"])
    return ", ".join(f"{_fmt(name)} ({n} row{'' if n == 1 else 's'})"
                     for name, n in providers.items())


def _model(summary: dict) -> str:
    """The model's name and the start of its hash (HTML), and the measurement version: two
    models of one file name (a model retrained into the configured path), or one model's rows
    under two measurement versions (an update that measures again), are two series that the
    name alone cannot tell apart."""
    name = _fmt(summary["model"])
    sha = summary.get("model_sha256")
    text = (f"{name} <code title='sha256 {html.escape(sha)}'>{html.escape(sha[:12])}</code>"
            if sha else name)
    version = summary.get("measurement_version")
    return text + (f", measurement {html.escape(version)}" if version else "")


def _order(acq: Acquisition) -> tuple[str, float]:
    """Sections by folder; a folder processed by several models (one series each) in the
    order they were processed."""
    if not len(acq):
        return acq.folder, 0.0
    return acq.folder, float(np.min(acq.table["processed_at"].cast("int64").to_numpy()))


def _time_sources(acq: Acquisition) -> tuple[str, str]:
    """A note (HTML) on the frames whose time is not the acquisition's own, and the words the
    plot's time axis adds for those of the file's modification time ("" each when every time
    comes from the file's metadata).

    ``acquired_at_source`` "mtime": the file holds no time nwwatch reads, and its
    modification time stands in (docs/io.md, "Acquisition time"): a copy or an edit since
    moves it. Where other frames declare their time, the trend leaves those out
    (:func:`nwwatch.dashboard.stats.trend_frames`), and the note says so. No
    ``acquired_at_source`` (rows of another writer): where the time comes from is not
    known."""
    series = frame_series(acq)
    timed = np.isfinite(series["t"])
    n = int(timed.sum())
    sources = series["time_source"][timed]
    mtime = int(np.count_nonzero(sources == "mtime"))
    unknown = int(sum(s is None for s in sources))
    left_out = int(np.count_nonzero(~series["in_trend"][timed]))
    off = int(np.count_nonzero(outside_declared_span(series["t"], series["in_trend"])))
    note = axis = ""
    if mtime:
        which = "All" if mtime == n else f"{mtime} of the {n}"
        # an ImageJ series without times steps back from the mtime by its frame interval
        note += (f"<p class='muted'>{which} frames' times come from their file's modification "
                 "time (<code>acquired_at_source</code> <code>mtime</code>: the file holds no "
                 "acquisition time nwwatch reads; an ImageJ series keeps its frame interval "
                 "back from it, docs/io.md): a copy or an edit since moves it, so it need not "
                 "be when the frames were acquired."
                 + (" Among frames that declare their time they are left out of the trend, "
                    "which is of the declared frames (their valid angles drawn hollow and "
                    "grey), and the span of acquisition times names them apart."
                    if left_out else "")
                 + (f" {off} of them {'lies' if off == 1 else 'lie'} outside the declared "
                    f"times and {'is' if off == 1 else 'are'} not drawn: the time axis spans "
                    "the declared times." if off else "") + "</p>")
        axis = ("file modification time" if mtime == n
                else f"{mtime} of {n} from file modification time"
                + (", not in the trend" if left_out else ""))
    if unknown:
        note += (f"<p class='muted'>{unknown} frame{' carries' if unknown == 1 else 's carry'} no "
                 "<code>acquired_at_source</code> (rows of another writer): where their times "
                 "come from is not known.</p>")
    return note, axis


def _distinct_sizes_nm(values_nm: np.ndarray) -> list[float]:
    """The distinct pixel sizes among finite ``values_nm``, sorted: sizes within
    :data:`nwwatch.io.mdoc.SAME_PIXEL_SIZE_REL` of a group's smallest are one size written
    twice (as float32 and float64, or rounded by a TIFF's rational tags), given as their
    median."""
    from nwwatch.io.mdoc import SAME_PIXEL_SIZE_REL

    groups: list[list[float]] = []
    for value in np.sort(values_nm):
        # against the group's first: a chain of small steps is not one size
        if groups and value - groups[-1][0] <= SAME_PIXEL_SIZE_REL * value:
            groups[-1].append(float(value))
        else:
            groups.append([float(value)])
    return [float(np.median(group)) for group in groups]


def _pixel_sizes(acq: Acquisition) -> str:
    """The pixel size(s) of a section's rows: one value in nm, "not calibrated" where no row
    has one (the angles need none; lengths stay in px), or the range of several
    (:func:`_distinct_sizes_nm`), with the frames that have none counted."""
    t = acq.table
    values = (np.asarray(t["pixel_size_nm"].to_pylist(), dtype=float)
              if "pixel_size_nm" in t.column_names else np.full(t.num_rows, np.nan))
    known = _distinct_sizes_nm(values[np.isfinite(values)])
    missing = int(np.count_nonzero(~np.isfinite(values)))
    if not known:
        return "pixel size not calibrated (lengths in px)"
    if len(known) == 1:
        text = f"pixel size {known[0]:.4g} nm"
    else:
        digits = 4  # more where two sizes differ beyond the grouping but not in 4 digits
        while f"{known[0]:.{digits}g}" == f"{known[-1]:.{digits}g}" and digits < 17:
            digits += 1
        text = (f"pixel sizes {known[0]:.{digits}g}–{known[-1]:.{digits}g} nm "
                f"({len(known)} values)")
    return text + (f", {missing} frame{'' if missing == 1 else 's'} not calibrated"
                   if missing else "")


def _refusal_cuts(versions: list[str]) -> str:
    """What refuses an angle for its 1σ in rows of measurement ``versions`` (HTML): the cut
    of each version (:func:`nwwatch.measure.contact_angle.max_uncertainty_deg_of`), not this
    nwwatch's where it differed, nor for a version of no known cut."""
    from nwwatch.measure import contact_angle

    codes = "the other reason codes are in docs/measurement.md"
    by_cut: dict[float | None, list[str]] = {}
    for version in versions:
        by_cut.setdefault(contact_angle.max_uncertainty_deg_of(version), []).append(version)
    if len(by_cut) == 1 and None not in by_cut and not any(v.startswith("1.") for v in versions):
        return (f"An angle whose 1σ exceeds {next(iter(by_cut)):g}° is refused "
                f"(<code>angle_uncertain</code>); {codes}")
    if not versions:  # rows of another writer: which version's cut refused them is not known
        return ("An angle is refused when its 1σ exceeds the cut of the measurement version "
                "that measured it, which the rows do not record (this nwwatch's: "
                f"{contact_angle.MAX_UNCERTAINTY_DEG:g}°, <code>angle_uncertain</code>); "
                f"{codes}")
    said = []
    for cut, named in by_cut.items():
        of = f"measurement {html.escape(', '.join(named))}"
        if cut is None:
            said.append(f"for {of}, a cut this nwwatch does not know (docs/measurement.md "
                        f"of {'that version' if len(named) == 1 else 'those versions'})")
        elif all(v.startswith("1.") for v in named):  # before reason codes
            said.append(f"{cut:g}° for {of} (status <code>fit_failed</code>)")
        else:
            said.append(f"{cut:g}° for {of} (<code>angle_uncertain</code>)")
    return ("An angle is refused when its 1σ exceeds the cut of the measurement version "
            f"that measured it: {'; '.join(said)}; the reason codes and statuses are in "
            "docs/measurement.md")


def _caption(acq: Acquisition, plotted: bool) -> str:
    """What the section's numbers are (HTML): the error bars' sigma, the refusal cut on it
    (that of the measurement version of the rows), the measurement version and the pixel
    size(s)."""
    t = acq.table
    versions = (sorted({v for v in t["measurement_version"].to_pylist() if v})
                if "measurement_version" in t.column_names else [])
    version = (f"measurement {html.escape(', '.join(versions))}" if versions
               else "measurement version not recorded")
    bars = "Error bars: 1σ of each angle. " if plotted else "Uncertainties are 1σ. "
    return (f"<p class='muted'>{bars}{_refusal_cuts(versions)}. {version}; "
            f"{_pixel_sizes(acq)}.</p>")


def _insitu_section(acq: Acquisition, files: Path) -> str:
    from nwwatch.dashboard.plots import angle_figure, save_png

    series = frame_series(acq)
    summary = acquisition_summary(acq, time.time(), None)
    stats = summary["stats"]
    # A row without an acquisition time (null acquired_at: the column is nullable, e.g. rows
    # of another writer) has no place on the time axis: counted in the statistics, listed
    # below the plot, not drawn.
    timed = np.isfinite(series["t"])
    untimed = int((~timed).sum())
    img = note = ""
    if timed.any():
        shown = {k: np.asarray(v)[timed] for k, v in series.items()}
        # A finished acquisition is read whole: the centred median follows the series
        # without the live trend's lag of half a window.
        # Of the frames in the trend only (:func:`trend_frames`): modification times put
        # among declared times land anywhere in the series.
        in_trend = shown["valid"] & shown["in_trend"]
        shown["trend"] = rolling_median(shown["angle"], in_trend, centred=True)
        n_valid = int(np.count_nonzero(in_trend))
        # a centred window reaches half its width each side: up to that plus one angle, every
        # window holds them all
        trend = f"rolling median of {TREND_WINDOW} valid, centred" + (
            f" (here {n_valid}: their median)" if n_valid <= TREND_WINDOW // 2 + 1 else "")
        # the model in the title: a picture of one folder per model, kept apart from the page
        model = " ".join(x for x in (summary.get("model"),
                                     (summary.get("model_sha256") or "")[:12]) if x)
        title = acq.folder + (f" ({model})" if model else "")
        weak, time_note = _time_sources(acq)
        note += weak
        png = save_png(angle_figure(shown, title, trend, time_note=time_note),
                       files / f"{_slug(acq)}-angle.png")
        img = _img(png, f"contact angle against time, {acq.folder}")
        apart = ~shown["in_trend"]
        # the span of the declared times; the modification times named apart (a copy's
        # second before every real frame stretched the span back to it)
        span = _span(shown["t"][~apart])  # frames declare their time where any is apart
        if apart.any():
            mtimes = shown["t"][apart]
            span += (f"; {int(apart.sum())} by file modification time: "
                     + (_span(mtimes) if mtimes.min() != mtimes.max() else
                        f"{datetime.fromtimestamp(mtimes[0], UTC):%Y-%m-%d %H:%M:%S} UTC"))
        # A stack whose pages carry no time of their own: every page has the file's time
        # (docs/io.md), and the plot draws them all at one x.
        counts = np.unique(shown["t"], return_counts=True)[1]
        shared = int(counts[counts > 1].sum())
        if shared:
            note += (f"<p class='muted'>{shared} frames share their acquisition time with "
                     "others (e.g. pages of a stack that carries no time per page take the "
                     "file's, and times stamped to the whole second repeat in a faster series: "
                     "docs/io.md): the plot draws each such group at one time, one above the "
                     "other.</p>")
    else:
        span = "no acquisition time"
    if untimed:
        names = [f"{html.escape(str(n))} (frame {f})"
                 for n, f in zip(np.asarray(series["source"])[~timed],
                                 np.asarray(series["frame"])[~timed], strict=True)]
        note += (f"<p class='muted'>{untimed} frame{'' if untimed == 1 else 's'} without an "
                "acquisition time (<code>acquired_at</code> null): counted in the statistics, "
                f"not in the plot: {', '.join(names[:20])}"
                + (f", … ({untimed - 20} more)" if untimed > 20 else "") + "</p>")
        span += f"; {untimed} without"
    refused = ", ".join(f"{html.escape(k)} {v}" for k, v in stats["refused"].items()) or "none"
    if stats["median_deg"] is None:  # dashes glued to degree signs ("—–—°") read as a value
        median = iqr = mean = "no valid angle"
    else:
        median = f"{_fmt(stats['median_deg'])}°"
        iqr = f"{_fmt(stats['q25_deg'])}–{_fmt(stats['q75_deg'])}°"
        mean = (f"{stats['mean_deg']:.1f}° (one angle: no sd)" if stats["sd_deg"] is None
                else f"{stats['mean_deg']:.1f} ± {_fmt(stats['sd_deg'])}°")
    return (
        img + _caption(acq, bool(img)) + note
        + "<table><tr><th>frames</th><th>valid</th><th>refused (by reason)</th>"
        "<th>median</th><th>IQR (q25–q75)</th><th>mean ± sd</th><th>acquired</th></tr>"
        f"<tr><td>{stats['n']}</td><td>{stats['n_valid']}</td><td>{refused}</td>"
        f"<td>{median}</td><td>{iqr}</td><td>{mean}</td><td>{span}</td></tr></table>"
    )


def _tomogram_section(acq: Acquisition, results: Path, files: Path) -> str:
    from nwwatch.atomic import atomic_write
    from nwwatch.dashboard.masks import mask_slices_png

    rows = acq.table.to_pylist()
    names = acq.table.column_names
    cols = [c for c in _VOLUME_COLUMNS if c in names
            or (c == "surface_area" and {"surface_area_nm2", "surface_area_px2"} & set(names))]
    # column names may wrap after their underscores, so the table fits the page (and print)
    out = ["<table><tr><th>file</th>" + "".join(f"<th>{c.replace('_', '_<wbr>')}</th>"
                                                 for c in cols) + "</tr>"]
    for row in rows:
        cells = (_surface_area(row) if c == "surface_area" else _fmt(row.get(c), 3)
                 for c in cols)
        out.append(f"<tr><td>{html.escape(Path(row['source']).name)}</td>"
                   + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</table>")
    drawn = _masks_to_draw(rows)
    with_mask = [k for k, row in enumerate(rows) if row.get("mask_path")]
    if len(drawn) < len(with_mask):  # say which, where the reader would look for them
        left = [Path(rows[k]["source"]).name for k in with_mask if k not in drawn]
        out.append(f"<p class='muted'>Mask slices of {len(drawn)} of the {len(with_mask)} "
                   "volumes: those not <code>ok</code> first, then the newest; not drawn: "
                   + html.escape(", ".join(left[:20]))
                   + (f", … ({len(left) - 20} more)" if len(left) > 20 else "") + "</p>")
    for i, row in enumerate(rows[k] for k in drawn):
        png = mask_slices_png(results / row["mask_path"])
        if png is None:
            # named, not left out: a page without the picture would look like no mask
            gone = "missing" if not (results / row["mask_path"]).exists() else "unreadable"
            out.append(f"<p>{html.escape(Path(row['source']).name)}: its mask "
                       f"{html.escape(str(row['mask_path']))} is {gone} in the results "
                       "folder</p>")
            continue
        with atomic_write(files / f"{_slug(acq)}-mask{i}.png") as handle:
            handle.write(png)
        out.append(f"<p>{html.escape(Path(row['source']).name)}: central z, y, x slices of the"
                   f" mask</p>{_img(png, 'mask slices', 'mask')}")
    return "".join(out)


def _masks_to_draw(rows: list[dict]) -> list[int]:
    """Indices (in table order) of the at most :data:`MAX_MASKS` volumes whose masks are
    drawn: those whose status is not "ok" (a suspect mask is the one to look at), newest
    first, then the newest of the others."""
    with_mask = [k for k, row in enumerate(rows) if row.get("mask_path")]
    flagged = [k for k in reversed(with_mask) if rows[k].get("status") != "ok"]
    others = [k for k in reversed(with_mask) if rows[k].get("status") == "ok"]
    return sorted((flagged + others)[:MAX_MASKS])


def _quarantine(acq: Acquisition) -> str:
    if not acq.quarantined:
        return ""
    rows = "".join(f"<tr><td>{html.escape(Path(q['path']).name)}</td>"
                   f"<td>{html.escape(str(q['reason']))}"
                   + ("; deleted since, nothing to do" if quarantined_gone(q) else "")
                   + "</td>"
                   f"<td>{html.escape(str(q['error_type']))}</td></tr>"
                   for q in acq.quarantined)
    return ("<h3>Quarantined files</h3><table><tr><th>file</th><th>reason</th><th>error</th>"
            f"</tr>{rows}</table>")


def _nothing_here(results: Path) -> str:
    """Why ``results`` holds no acquisition, naming what it does hold (an empty ``frames/``
    was reported as absent)."""
    held = [f"{kind}/ holds no results yet" for kind in ("frames", "volumes")
            if (results / kind).is_dir()]
    if (results / "quarantine.parquet").is_file():
        held.append("quarantine.parquet lists no file")
    if not held:
        return f"{results}: no frames/, volumes/ or quarantine.parquet here"
    return f"{results}: nothing to report yet: {'; '.join(held)}"


def write_report(results: str | Path, out: str | Path,
                 acquisitions: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Write the report of the results folder ``results`` to ``out`` (HTML) and its PNGs to
    ``<out stem>_files/``; returns ``out``. ``acquisitions``: only these acquisition folders
    (as ``nwwatch compact --acquisition`` names them; all when empty). Raises
    FileNotFoundError when ``results`` holds no results at all, or none of an acquisition
    named (the message lists those it holds)."""
    results, out = Path(results), Path(out)
    given = [path_text(os.path.abspath(a)) for a in acquisitions]
    for _ in range(_READ_TRIES):
        store = ResultsStore(results)
        store.refresh()
        if not store.vanished:  # else files were replaced (compacted) while being read
            break
    acqs = sorted(store.snapshot.values(), key=_order)
    unreadable = sorted(store.unreadable)
    if not acqs:
        if unreadable:
            raise FileNotFoundError(f"{results}: the results files could not be read "
                                    f"(damaged?): {', '.join(unreadable)}")
        raise FileNotFoundError(_nothing_here(results))
    if given:
        held = sorted({a.folder for a in acqs})
        # the folder as the page names it, else a Gatan time-tree folder's recording
        wanted = [g if g in held else acquisition_named(g) for g in given]
        if missing := [w for w in wanted if w not in held]:  # a typo: not an empty page
            raise FileNotFoundError(f"{results}: no results of acquisition "
                                    f"{', '.join(missing)} (acquisitions here: "
                                    f"{', '.join(held)})")
        acqs = [a for a in acqs if a.folder in wanted]
    # The pictures go to a fresh folder that then replaces <out stem>_files/: a picture of
    # an earlier report (an acquisition since compacted away, a mask no longer drawn) would
    # otherwise stay there beside this report's.
    final = out.with_name(out.stem + "_files")
    if final.exists() and not final.is_dir():  # before the work, not after the page is written
        raise FileExistsError(errno.EEXIST, "a file is in the way of the report's pictures; "
                              "remove it or give another --out", str(final))
    if final.is_dir() and not final.is_symlink():
        # replaced whole: only an earlier report's (its PNGs alone), never a folder of the
        # user's that happens to have the name (a browser's "Save page as" makes X_files/)
        others = sorted(p.name for p in final.iterdir()
                        if not (p.suffix.lower() == ".png" and p.is_file()))
        if others:
            raise FileExistsError(errno.EEXIST, f"the folder for the report's pictures holds "
                                  f"files no report wrote ({', '.join(others[:3])}"
                                  f"{' ...' if len(others) > 3 else ''}); it is not replaced: "
                                  "give another --out", str(final))
    out.parent.mkdir(parents=True, exist_ok=True)
    # a folder of this run's own: two reports to one --out at once each fill their own
    # (mkdir, not mkdtemp: the pictures' folder keeps the umask's permissions, not 0700)
    files = out.with_name(f".{out.stem}_files.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    files.mkdir()
    try:
        _write_page(results, out, store, acqs, unreadable, files)
        _swap_in(files, final)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    return out


def _swap_in(files: Path, final: Path) -> None:
    """Put the folder ``files`` in the place of ``final`` (an earlier report's pictures moved
    aside and removed). Another report swapping its own in at the same moment wins or loses
    whole: each attempt moves whatever folder is there aside first."""
    old = files.with_name(files.name + ".old")
    for _ in range(_READ_TRIES):
        if final.is_dir():
            try:
                final.rename(old)
            except FileNotFoundError:  # another report moved it aside first
                pass
        try:
            files.rename(final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
            continue  # another report's folder arrived in between: move it aside too
        finally:
            if old.is_symlink():  # a link to the pictures' folder: the link alone goes
                old.unlink()
            shutil.rmtree(old, ignore_errors=True)
        return
    raise FileExistsError(errno.EEXIST, "kept being replaced by another report", str(final))


def _write_page(results: Path, out: Path, store: ResultsStore, acqs: list[Acquisition],
                unreadable: list[str], files: Path) -> None:
    """The page of ``acqs`` to ``out``, its pictures to the folder ``files``."""
    from nwwatch.atomic import atomic_write

    kinds = {acq.kind for acq in acqs}
    # What the tables below hold: a tomogram-only page has no frames and no angles.
    notes = ([" Refused frames are named by their reason code; the trend is a rolling median"
              " of the valid angles, centred on each frame."] if "insitu" in kinds else []) + (
        [" Suspect volumes are named by their reason code and reason."]
        if "tomogram" in kinds else [])
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>nwwatch report: {html.escape(str(results))}</title><style>{_CSS}</style>"
             f"</head><body><h1>nwwatch report</h1><p class='muted'>Results <code>"
             f"{html.escape(str(results.resolve()))}</code>, written "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by nwwatch {__version__}."
             f"{''.join(notes)}</p>"]
    if unreadable:  # their rows are missing from everything below: say so first
        parts.append("<p class='warn'>" + f"{len(unreadable)} results file(s) could not be read"
                     " as nwwatch results (damaged, or another program's file?); their rows"
                     " are not in this report:</p><ul>"
                     + "".join(f"<li><code>{html.escape(p)}</code></li>" for p in unreadable)
                     + "</ul>")
    if store.vanished:  # still, after _READ_TRIES readings
        parts.append(f"<p class='warn'>{len(store.vanished)} results file(s) were replaced while"
                     " this report read them (a compaction running?); rows may be missing: "
                     "make the report again.</p>")
    for acq in acqs:
        s = acquisition_summary(acq, time.time(), None)
        kind = "quarantined files only" if acq.kind == "unknown" else acq.kind
        # no rows, no model: "model — on —" said nothing
        made_by = f"; model {_model(s)} on {_providers(s)}" if len(acq) else ""
        parts.append(f"<h2>{html.escape(acq.folder)}</h2><p class='muted'>{kind}, "
                     f"{len(acq)} row{'' if len(acq) == 1 else 's'}{made_by}</p>")
        if len(acq) and acq.kind == "insitu":
            parts.append(_insitu_section(acq, files))
        elif len(acq):
            parts.append(_tomogram_section(acq, results, files))
        parts.append(_quarantine(acq))
    parts.append("</body></html>")
    with atomic_write(out) as handle:
        handle.write("\n".join(parts).encode())


def _is_report(path: Path) -> bool:
    """True when ``path`` is empty or a page :func:`write_report` wrote (an earlier report,
    replaced by the new one); anything else (a frame, a notebook page) is a file a mistyped
    ``--out`` names."""
    with path.open("rb") as handle:
        head = handle.read(512)
    return head == b"" or b"<title>nwwatch report: " in head


@click.command("report")
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=OutputFile("report.html"),
              default=Path("report.html"), show_default=True, help="HTML file to write.")
@click.option("--acquisition", "acquisitions", multiple=True, type=click.Path(path_type=Path),
              help="Only this acquisition folder (repeatable; default: every acquisition "
                   "of RESULTS).")
def report(results: Path, out: Path, acquisitions: tuple[Path, ...]) -> None:
    """Write a static HTML report (with PNG plots) of a results folder."""
    from nwwatch.options import refuse_inside_results, require_writable

    # A usage error naming --out before the results are read and the plots drawn; OSErrors
    # below (a full disk) can still happen while writing.
    if out.is_file() and not _is_report(out):
        # e.g. '--out DATA/images/f.tif' from a tab completion: replaced by HTML, it was lost
        raise click.BadParameter(f"{out} exists and is not an nwwatch report; it is not "
                                 "replaced", param_hint="'--out'")
    # the page and its pictures there would break pd.read_parquet('RESULTS/frames')
    refuse_inside_results(out, "'--out'", results)
    require_writable(out, "'--out'")
    try:
        path = write_report(results, out, acquisitions)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # e.g. a full disk, or <out stem>_files in the way
        raise click.ClickException(f"{out}: cannot write the report "
                                   f"({exc.strerror or exc}: {exc.filename or out})") from None
    say(f"wrote {path} (pictures in {path.with_name(path.stem + '_files')})")
