"""`nwwatch demo`: the main job end to end on synthetic data.

synthetic growth video -> replay through the service's code path with the shipped default
model -> Parquet -> contact angle against time with the ground truth, overlays, and a montage
of frames, labels and tomogram slices.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np
import pyarrow.parquet as pq

from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.io import read_frames, read_volume
from nwwatch.io.dataset import read_label_image
from nwwatch.io.png import write_image_file
from nwwatch.normalize import stretch_to_uint8
from nwwatch.options import SEED, listed, model_file, require_writable, say
from nwwatch.service.names import source_name
from nwwatch.synth.video import VIDEO_SCENES, scene_options

#: The main video (looks like the real frames) and the stress video (a small droplet at a
#: very low dose): :data:`nwwatch.synth.video.VIDEO_SCENES`, at 512 px.
MAIN_VIDEO = VIDEO_SCENES["realistic"]
STRESS_VIDEO = VIDEO_SCENES["stress"]


_LABEL_COLOURS = np.array([[0, 0, 0], [60, 160, 60], [40, 80, 230]], np.uint8)  # BGR


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def write_montage(video_dir: Path, tomogram_dir: Path, path: Path, n_frames: int = 4) -> Path:
    """Montage PNG: row 1 frames, row 2 their labels, row 3 tomogram slices and truth."""
    size = 256
    frames = sorted(video_dir.glob("frame_*.tif"))
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, n_frames).astype(int)]
    row_frames = [_tile(stretch_to_uint8(read_frames(p)[0].image), size) for p in picks]
    row_labels = []
    for p in picks:
        labels = read_label_image(video_dir / "labels" / f"{p.stem}.png")
        row_labels.append(_tile(_LABEL_COLOURS[np.minimum(labels, 2)], size))
    volume = read_volume(tomogram_dir / "volume.tif").data
    truth = read_volume(tomogram_dir / "truth.tif").data
    z, y = volume.shape[0] // 2, volume.shape[1] // 2
    row_tomo = [
        _tile(stretch_to_uint8(volume[z]), size),
        _tile((truth[z] * 255).astype(np.uint8), size),
        _tile(stretch_to_uint8(volume[:, y, :]), size),
        _tile((truth[:, y, :] * 255).astype(np.uint8), size),
    ]
    montage = np.vstack([np.hstack(row) for row in (row_frames, row_labels, row_tomo)])
    for i, text in enumerate(("in-situ frames", "labels (green wire, red droplet)",
                              "tomogram XY, truth XY, XZ, truth XZ")):
        cv2.putText(montage, text, (8, 22 + i * size), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 255, 255), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image_file(path, montage)
    return path


@dataclass(frozen=True)
class AngleSeries:
    """Every synthesised frame in time order: ``time_s``, the true (apparent) angle and what
    the measurement gave (angles and 1-sigma in degrees; NaN where a frame has no angle or no
    row), ``valid`` per frame and the ``reason_code`` of each refused one."""

    time_s: np.ndarray
    true_deg: np.ndarray
    angle_deg: np.ndarray
    sigma_deg: np.ndarray
    valid: np.ndarray
    reason_code: list[str]

    @property
    def valid_deg(self) -> np.ndarray:
        """Measured angles, NaN where the angle is not valid."""
        return np.where(self.valid, self.angle_deg, np.nan)

    def refused_counts(self) -> dict[str, int]:
        """Refused frames per reason code, most frequent first."""
        codes = Counter(c for c, v in zip(self.reason_code, self.valid, strict=True) if not v)
        return dict(codes.most_common())


def angle_vs_time(frames_table, truth_table, truth_dir: str | os.PathLike[str],
                  stack: str | os.PathLike[str] | None = None) -> AngleSeries:
    """Join the frame rows (``frames_table``: ``source``, ``frame``, the angle columns) to a
    truth table (``truth.parquet`` of ``truth_dir``), in time order.

    A truth row is the page of one file: its ``file`` in ``truth_dir`` against the row's
    ``source`` (both absolute, symbolic links resolved), and, where the truth names a file
    more than once (a stack), its ``frame_index`` against the row's ``frame``; a file the
    truth names once is its one page. ``stack``: the truth's frames were written as the pages
    of this file instead (page = ``frame_index``), as a stack made from a synthetic video.
    Rows of other files (other acquisitions in the same results folder) are left out; a truth
    row with no row reads ``no_row``. Raises ValueError naming ``truth_dir`` and a row's
    ``source`` where there are rows but none is of a file the truth names (the frames were
    measured under another path: pass that path as ``truth_dir``). Raises ValueError naming
    the file and page where one truth row matches several rows (rows of several models or
    measurement versions, or a stack's pages against a truth that names the file once):
    select one series first (:func:`nwwatch.results.reading.read_results` keeps each file's
    newest version)."""
    columns = ("source", "frame", "contact_angle_deg", "contact_angle_uncertainty_deg",
               "angle_valid", "reason_code")
    missing = [c for c in columns if c not in frames_table.column_names]
    if missing:
        raise ValueError(f"the frame rows have no {', '.join(missing)} column: give rows of "
                         "a results folder (nwwatch.results.reading.read_results)")
    rows = frames_table.to_pydict()
    resolved: dict[str, str] = {}

    def where(path: str) -> str:
        # the same resolution on both sides: a results folder replayed through a symbolic
        # link names its files by the link, a truth folder may be given by its real path
        if path not in resolved:
            resolved[path] = os.path.realpath(path)
        return resolved[path]

    by_file: dict[str, list[int]] = {}
    for i, source in enumerate(rows["source"]):
        by_file.setdefault(where(source), []).append(i)
    truth = truth_table.to_pydict()
    names = Counter(truth["file"])
    if (stack is not None or max(names.values(), default=1) > 1) and "frame_index" not in truth:
        raise ValueError("the truth table has no frame_index column: it is needed to find "
                         "the pages of a stack")
    order = np.argsort(np.asarray(truth["time_s"], float), kind="stable")
    got = []
    for i in order:
        if stack is not None:
            file, page = source_name(stack), int(truth["frame_index"][i])
        else:
            file = source_name(Path(truth_dir) / truth["file"][i])
            page = int(truth["frame_index"][i]) if names[truth["file"][i]] > 1 else None
        matches = [j for j in by_file.get(where(file), ())
                   if page is None or rows["frame"][j] == page]
        if len(matches) > 1:
            raise ValueError(_several_rows(file, page, [
                {c: rows[c][j] for c in ("frame", "model_sha256", "measurement_version")
                 if c in rows} for j in matches]))
        got.append(tuple(rows[c][matches[0]] for c in columns[2:]) if matches
                   else (None, None, False, "no_row"))
    if rows["source"] and got and not any(
            where(f) in by_file for f in _truth_files(truth, truth_dir, stack)):
        # rows that name the frames by another path (the folder moved or copied, another
        # mount, rows written on another machine) would otherwise read as every frame
        # unmeasured, with no hint that the join found nothing
        raise ValueError(_nothing_joined(truth_dir, stack, rows["source"]))

    def floats(values) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in values])

    return AngleSeries(
        time_s=floats(truth["time_s"][i] for i in order),
        true_deg=floats(truth["theta_apparent_deg"][i] for i in order),
        angle_deg=floats(g[0] for g in got), sigma_deg=floats(g[1] for g in got),
        valid=np.array([bool(g[2]) for g in got]), reason_code=[str(g[3]) for g in got])


def _truth_files(truth: dict, truth_dir: str | os.PathLike[str],
                 stack: str | os.PathLike[str] | None) -> list[str]:
    """The files the truth's rows name, as the rows' ``source`` would name them."""
    if stack is not None:
        return [source_name(stack)]
    return [source_name(Path(truth_dir) / f) for f in dict.fromkeys(truth["file"])]


def _nothing_joined(truth_dir: str | os.PathLike[str], stack: str | os.PathLike[str] | None,
                    sources: list[str]) -> str:
    """Why no truth row found a row although there are rows: the paths differ."""
    where = f"the stack {source_name(stack)}" if stack is not None else \
        f"the truth folder {source_name(truth_dir)}"
    return (f"none of the {len(sources)} frame rows is of a file in {where} (a row's source: "
            f"{sources[0]}): give as truth_dir (or stack=) the path the frames were measured "
            "under, as the rows' source names it, or replay the frames from where they are now")


def _several_rows(file: str, page: int | None, matched: list[dict]) -> str:
    """Why one truth row of ``file`` (its ``page``, None: the file's one page) matched the
    rows ``matched`` (their frame, model and measurement version where the rows carry them)."""
    what = f"{file}" + (f" page {page}" if page is not None else "")
    frames = sorted({m["frame"] for m in matched})
    if page is None and len(frames) > 1:
        return (f"{what}: the truth names this file once, but {len(matched)} rows of pages "
                f"{listed([str(f) for f in frames])} match it: give the truth's frames as the "
                "pages of a stack (stack=, page = frame_index), or a truth that names each page")
    series = sorted({(str(m.get("model_sha256") or "no model")[:8],
                      str(m.get("measurement_version"))) for m in matched})
    return (f"{what}: {len(matched)} rows match one truth row (model, measurement version: "
            f"{listed([f'{a} {b}' for a, b in series])}): select one model and measurement "
            "version, and read the results with nwwatch.results.reading.read_results, which "
            "keeps each file's newest rows")


def angle_errors(true_deg: np.ndarray, meas_deg: np.ndarray) -> dict[str, float]:
    """Frames, valid frames, RMSE and median absolute error (deg) of the valid ones."""
    errors = meas_deg - true_deg
    ok = np.isfinite(errors)
    return {
        "frames": float(len(errors)),
        "valid": float(ok.sum()),
        "rmse_deg": float(np.sqrt(np.mean(errors[ok] ** 2))) if ok.any() else float("nan"),
        "median_abs_error_deg": float(np.median(np.abs(errors[ok]))) if ok.any() else float("nan"),
    }


def summary_line(stats: dict[str, float], refused: dict[str, int] | None = None) -> str:
    """The demo's one-line account of :func:`angle_errors`, and of the refused frames per
    reason code; no RMSE without a valid angle."""
    counted = f"{int(stats['valid'])}/{int(stats['frames'])} frames measured"
    why = ""
    if refused:
        why = (f"; {sum(refused.values())} refused ("
               + ", ".join(f"{code} {n}" for code, n in refused.items()) + ")")
    if not stats["valid"]:
        return f"{counted}: no valid angle{why}"
    return (f"{counted}, RMSE {stats['rmse_deg']:.2f} deg, median |error| "
            f"{stats['median_abs_error_deg']:.2f} deg{why}")


def plot_angle_vs_time(times: np.ndarray, true_deg: np.ndarray, meas_deg: np.ndarray,
                       path: Path, series: AngleSeries | None = None) -> bool:
    """PNG of measured and true contact angle against time. With ``series``, the valid
    angles carry their 1-sigma bars and the refused frames that still have an angle are
    drawn hollow with theirs (their reason codes in the legend). Returns False, writing
    nothing, when matplotlib (the ``report`` extra) is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=120)
    ax.plot(times, true_deg, "k-", lw=1.2, label="ground truth (apparent)")
    if series is None:
        ax.plot(times, meas_deg, "o", ms=3.5, color="tab:red", label="nwwatch")
    else:
        refused = ~series.valid & np.isfinite(series.angle_deg)
        if refused.any():
            codes = sorted({c for c, r in zip(series.reason_code, refused, strict=True) if r})
            ax.errorbar(series.time_s[refused], series.angle_deg[refused],
                        yerr=series.sigma_deg[refused], fmt="o", ms=3.5, mfc="none",
                        color="0.6", lw=0.8, capsize=0,
                        label=f"refused ({', '.join(codes)}), +-1 sigma")
        ok = series.valid
        ax.errorbar(series.time_s[ok], series.angle_deg[ok], yerr=series.sigma_deg[ok],
                    fmt="o", ms=3.5, color="tab:red", lw=0.8, capsize=0,
                    label="nwwatch, valid, +-1 sigma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("contact angle (deg)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


#: Marks a folder ``nwwatch demo`` wrote: run again into it, the demo replaces its own files.
DEMO_MARK = ".nwwatch-demo"
#: What the demo writes into its folder (each replaced by a new run).
DEMO_ENTRIES = ("video", "tomogram", "results", "overlays", "montage.png",
                "contact_angle_vs_time.png")


def _own_output_folder(out: Path) -> None:
    """Make ``out`` the demo's, empty of an earlier run's files: a new or empty folder, or
    one an earlier demo wrote (:data:`DEMO_MARK`), whose :data:`DEMO_ENTRIES` are removed
    (left, an earlier run's frames were replayed with the new ones and a file of the
    user's under a demo name replaced). Any other folder with files in it is refused, and
    so is one that cannot be written, each with one line naming it."""
    import shutil

    if out.is_dir() and not (out / DEMO_MARK).is_file():
        held = sorted(p.name for p in out.iterdir())
        if held:
            raise click.ClickException(
                f"{out} already holds files that no earlier nwwatch demo wrote "
                f"({listed(held)}): "
                "give a new or empty folder")
    require_writable(out, "'OUT'", folder=True)
    for name in DEMO_ENTRIES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    (out / DEMO_MARK).write_text("written by nwwatch demo: a new run replaces "
                                 f"{', '.join(DEMO_ENTRIES)}\n")


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), default="demo_output")
@click.option("--frames", "n_frames", type=click.IntRange(min=4), default=60, show_default=True)
@click.option("--size", type=click.IntRange(min=64), default=512, show_default=True)
@click.option("--model", callback=model_file, metavar="MODEL", default=None,
              help="ONNX in-situ model, or a shipped one's name (default: insitu-default).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--stress", is_flag=True,
              help="The stress case instead: a 35 px droplet (at 512 px) at 35 e/px; the "
                   "rest of the scene is the seed's own draw (at seed 0 a wire tilted 2.4 deg).")
def demo(out: Path, n_frames: int, size: int, model: Path | None, seed: int,
         stress: bool) -> None:
    """Synthetic growth video -> nwwatch -> Parquet -> angle-vs-time plot and overlays."""
    from nwwatch.measure import draw_overlay, measure_contact_angle
    from nwwatch.results.reading import read_results
    from nwwatch.segment.session import ModelLoadError, Segmenter
    from nwwatch.service.replay import replay
    from nwwatch.synth import generate_insitu, generate_tomogram

    model = model or DEFAULT_INSITU_MODEL
    if not model.is_file():
        raise click.ClickException(f"{model}: default model missing; reinstall nwwatch")
    try:  # before anything is written: a model the replay would refuse is named now
        segmenter = Segmenter(model, providers=("cpu",))
        segmenter.require_kind("insitu", "the demo's growth video")
    except ModelLoadError as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from None
    _own_output_folder(out)
    video, tomo, results = out / "video", out / "tomogram", out / "results"

    start = time.perf_counter()
    say(f"1/4 synthesising a {n_frames}-frame growth video ({size}x{size}) in {video}")
    options = scene_options("stress" if stress else "realistic", size)
    generate_insitu(video, n_frames, video=True, seed=seed, size=size, video_options=options)
    say(f"2/4 synthesising a 64^3 tomogram in {tomo}")
    generate_tomogram(tomo, size=64, seed=seed)
    montage = write_montage(video, tomo, out / "montage.png")
    say(f"    montage: {montage}")

    say(f"3/4 processing the video with {model.name} (the service's replay path)")
    summary = replay(video, results, kind="insitu", model=model, force=True)
    say(
        f"    {summary.frames} frames from {summary.files} files in {summary.seconds:.1f} s "
        f"({summary.frames_per_s:.1f} frames/s, {summary.provider}); "
        f"failed {summary.failed}, quarantined {summary.quarantined}"
    )

    say("4/4 plotting contact angle against time and drawing overlays")
    frames_table = read_results(results)
    truth_table = pq.read_table(os.path.abspath(video / "truth.parquet"))
    series = angle_vs_time(frames_table, truth_table, video)
    stats = angle_errors(series.true_deg, series.valid_deg)
    plot = out / "contact_angle_vs_time.png"
    if not plot_angle_vs_time(series.time_s, series.true_deg, series.valid_deg, plot,
                              series=series):
        say("    plot skipped: matplotlib is not installed (pip install 'nwwatch[report]')")
        plot = None
    overlays = out / "overlays"
    overlays.mkdir(exist_ok=True)
    from nwwatch.normalize import normalize_image

    sources = sorted(video.glob("frame_*.tif"))
    for path in [sources[i] for i in np.linspace(0, len(sources) - 1, 4).astype(int)]:
        frame = read_frames(path)[0]
        seg = segmenter.segment(normalize_image(frame.image))
        result = measure_contact_angle(seg.labels[0], seg.probabilities[0, 2],
                                       pixel_size_nm=frame.pixel_size_nm, image=frame.image)
        write_image_file(overlays / f"{path.stem}.png",
                         draw_overlay(frame.image, seg.labels[0], result))
    say(f"    {summary_line(stats, series.refused_counts())}")
    shown = f"{plot}, " if plot is not None else ""
    say(f"done in {time.perf_counter() - start:.0f} s: see {shown}{out}/montage.png, "
        f"{overlays}/, Parquet in {results}/frames/")
