"""Matplotlib figures of the report (the dashboard draws the same in the browser)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np

from nwwatch.dashboard.stats import TREND_WINDOW, outside_declared_span

_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#ff7f0e", "#2ca02c"]


def angle_figure(series: dict, title: str,
                 trend_label: str = f"rolling median of the last {TREND_WINDOW} valid",
                 time_note: str = ""):
    """Contact angle against acquisition time: valid angles with their uncertainty bars, the
    trend (``series["trend"]``, named by ``trend_label``; none where the valid angles share
    one time; of the valid angles ``series["in_trend"]`` marks, all where it is absent, the
    others drawn hollow and grey), refused frames as one row of
    markers per reason code in a lane of their own below the angle axes (no degree ticks:
    they have no angle). Rows the trend leaves out whose times lie outside the declared
    times' span (:func:`nwwatch.dashboard.stats.outside_declared_span`: they would stretch
    the time axis to reach them) are not drawn, counted in the axis label. ``time_note``:
    words the time axis's label adds (where the times are the files' modification times,
    not acquisition times).

    ``series``: :func:`nwwatch.dashboard.data.frame_series`. Returns a matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    in_trend = np.asarray(series.get("in_trend", np.ones(len(series["t"]), bool)), dtype=bool)
    off = outside_declared_span(series["t"], in_trend)
    if off.any():
        series = {k: np.asarray(v)[~off] for k, v in series.items()}
        in_trend = in_trend[~off]
    t = np.array([datetime.fromtimestamp(s, UTC) for s in series["t"]])
    valid = series["valid"]
    angle, unc = series["angle"], series["unc"]
    codes = sorted({c for c, ok in zip(series["code"], valid, strict=True) if not ok})
    # Refused frames have no angle: they go in a lane of their own below the angle axes, with
    # no degree ticks, as on the dashboard (on the angle axis they read as angles of 70-100°).
    if codes:
        lane_share = min(0.4, 0.06 + 0.06 * len(codes))
        fig, (ax, lane) = plt.subplots(
            2, 1, sharex=True, figsize=(9, 4.2), dpi=110, layout="constrained",
            gridspec_kw={"height_ratios": [1 - lane_share, lane_share]})
    else:
        fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110, layout="constrained")
        lane = None
    # valid angles the trend leaves out (timed by their file's modification time among
    # frames that declare theirs): hollow and grey, named so in the legend
    kept, apart = valid & in_trend, valid & ~in_trend
    if kept.any():
        ax.errorbar(t[kept], angle[kept], yerr=np.nan_to_num(unc[kept]), fmt="o", ms=3.5,
                    color="#1f5fbf", ecolor="#1f5fbf80", elinewidth=1, capsize=0,
                    label=f"valid ({int(kept.sum())})")
        if t[kept].min() != t[kept].max():
            # of one time (a stack without per-page times) the trend is a vertical segment
            # behind the points: no trend to show
            ax.plot(t[kept], series["trend"][kept], color="#f28e2b", lw=2,
                    label=trend_label)
    if apart.any():
        ax.errorbar(t[apart], angle[apart], yerr=np.nan_to_num(unc[apart]), fmt="o", ms=4,
                    color="#8a8f98", mfc="none", ecolor="#8a8f9880", elinewidth=1, capsize=0,
                    label=f"valid, file modification time: not in the trend "
                          f"({int(apart.sum())})")
    if valid.any():
        lo = np.nanmin(angle[valid] - np.nan_to_num(unc[valid]))
        hi = np.nanmax(angle[valid] + np.nan_to_num(unc[valid]))
        y_min = max(0.0, np.floor((lo - 10) / 10) * 10)
        y_max = min(180.0, np.ceil((hi + 5) / 10) * 10)
    else:
        y_min, y_max = 0.0, 180.0
    ax.set_ylim(y_min, y_max)
    ax.set_ylabel("contact angle (°)")
    ax.grid(alpha=0.3)
    # a "$" pair in a folder or model name is matplotlib's math: shown as written
    ax.set_title(title.replace("$", r"\$"), fontsize=10)
    bottom = ax
    if lane is not None:
        codes_arr = np.array(series["code"])
        rows = np.arange(len(codes))[::-1]  # the first code on top, as on the dashboard
        for k, code in enumerate(codes):
            pick = (codes_arr == code) & ~valid
            lane.plot(t[pick], np.full(pick.sum(), rows[k]), "o", ms=5,
                      color=_COLORS[k % len(_COLORS)],
                      label=f"refused: {code} ({int(pick.sum())})")
        lane.set_ylim(-0.75, len(codes) - 0.25)
        # the codes on the right, "refused" on the left where the degrees are above
        lane.yaxis.tick_right()
        lane.set_yticks(rows, codes, fontsize=8)
        lane.set_ylabel("refused", fontsize=8)
        lane.grid(alpha=0.3, axis="x")
        bottom = lane
    if len(t) and t.min() == t.max():
        # frames of one time (a stack without per-page times): a minute around it, not
        # matplotlib's four years
        ax.set_xlim(t.min() - timedelta(seconds=30), t.max() + timedelta(seconds=30))
    # The date(s) in the axis label, not matplotlib's offset, which names the last tick's
    # day (an acquisition past midnight read as all of the second day) and minute (frames
    # 22:13:20-22:13:59 read as 22:14:20-22:14:59); a tick at midnight carries its date.
    days = sorted({d.date() for d in t}) if len(t) else []
    dates = (f"{days[0]:%Y-%m-%d}" if len(days) == 1 else
             f"{days[0]:%Y-%m-%d} – {days[-1]:%Y-%m-%d}" if days else "")
    said = ", ".join(x for x in ("UTC", dates, time_note) if x)
    if off.any():
        said += f"; {int(off.sum())} outside the declared times, not drawn"
    bottom.set_xlabel(f"acquisition time ({said})")
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(
        bottom.xaxis.get_major_locator(),
        formats=["%Y", "%b", "%d", "%H:%M", "%H:%M", "%H:%M:%S.%f"],
        zero_formats=["", "%Y", "%b", "%Y-%m-%d", "%H:%M", "%H:%M:%S.%f"],
        show_offset=False))
    handles, labels = ax.get_legend_handles_labels()
    if lane is not None:
        more = lane.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # below the plot, as on the dashboard: inside the axes it covered the first points of
    # an acquisition whose angle falls (the axis leaves only 5-15° above the highest). Four
    # columns of long labels (a trend's, the modification times') were wider than the
    # figure and cut at both edges: fewer columns, more rows, until it fits. The legend is
    # centred, so it fits where its width does; measured with the renderer alone (a full
    # draw per try took seconds on a long acquisition).
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(4, len(handles)), 0, -1):
        legend = fig.legend(handles, labels, fontsize=8, loc="outside lower center",
                            ncols=ncols)
        if ncols == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            break
        legend.remove()
    _wrap_xlabel(fig, ax, bottom, renderer)
    return fig


def _wrap_xlabel(fig, ax, bottom, renderer) -> None:
    """Break the time axis's label into lines that fit the figure: it is centred under the
    axes, which the y axes' decorations (the degrees on the left, the reason codes on the
    right) push off the figure's centre, and a long label (the modification-time notes) was
    cut at one edge. Measured with the renderer alone, as the legend is."""
    label = bottom.xaxis.label
    # the widths the layout leaves left and right of the axes; the label's centre sits half
    # their difference off the figure's, so it fits where it is narrower than the figure
    # less that difference (and a margin at each edge)
    left_px = right_px = 0.0
    for a in (ax, bottom):
        box = a.yaxis.get_tightbbox(renderer)
        if box is not None:
            left_px = max(left_px, a.bbox.x0 - box.x0)
            right_px = max(right_px, box.x1 - a.bbox.x1)
    room_px = fig.bbox.width - abs(left_px - right_px) - 2 * 10 * fig.dpi / 72

    def width_px(text: str) -> float:
        label.set_text(text)
        return label.get_window_extent(renderer).width

    text = label.get_text()
    if width_px(text) <= room_px:
        return
    # break after the label's own commas and semicolons, within a piece at its spaces
    pieces = [word for piece in re.split(r"(?<=[,;]) ", text)
              for word in ([piece] if width_px(piece) <= room_px else piece.split(" "))]
    lines = [pieces[0]]
    for piece in pieces[1:]:
        joined = f"{lines[-1]} {piece}"
        if width_px(joined) <= room_px:
            lines[-1] = joined
        else:
            lines.append(piece)
    label.set_text("\n".join(lines))


def save_png(fig, path) -> bytes:
    """Write ``fig`` as a PNG at ``path`` (atomically) and return the bytes (for embedding)."""
    import io

    import matplotlib.pyplot as plt

    from nwwatch.atomic import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    with atomic_write(path) as handle:
        handle.write(data)
    return data
