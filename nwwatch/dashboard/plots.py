"""Matplotlib figures of the report (the dashboard draws the same in the browser)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from nwwatch.dashboard.stats import TREND_WINDOW

_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#ff7f0e", "#2ca02c"]


def angle_figure(series: dict, title: str,
                 trend_label: str = f"rolling median of the last {TREND_WINDOW} valid"):
    """Contact angle against acquisition time: valid angles with their uncertainty bars, the
    trend (``series["trend"]``, named by ``trend_label``), refused frames as one row of
    markers per reason code below.

    ``series``: :func:`nwwatch.dashboard.data.frame_series`. Returns a matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    t = np.array([datetime.fromtimestamp(s, UTC) for s in series["t"]])
    valid = series["valid"]
    angle, unc = series["angle"], series["unc"]
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    if valid.any():
        ax.errorbar(t[valid], angle[valid], yerr=np.nan_to_num(unc[valid]), fmt="o", ms=3.5,
                    color="#1f5fbf", ecolor="#1f5fbf80", elinewidth=1, capsize=0,
                    label=f"valid ({int(valid.sum())})")
        ax.plot(t[valid], series["trend"][valid], color="#f28e2b", lw=2,
                label=trend_label)
        lo = np.nanmin(angle[valid] - np.nan_to_num(unc[valid]))
        hi = np.nanmax(angle[valid] + np.nan_to_num(unc[valid]))
    else:
        lo, hi = 90.0, 150.0
    codes = sorted({c for c, ok in zip(series["code"], valid, strict=True) if not ok})
    y_min = max(0.0, np.floor((lo - 10 - 6 * len(codes)) / 10) * 10)
    y_max = min(180.0, np.ceil((hi + 5) / 10) * 10)
    step = (y_max - y_min) / 40
    codes_arr = np.array(series["code"])
    for k, code in enumerate(codes):
        pick = (codes_arr == code) & ~valid
        ax.plot(t[pick], np.full(pick.sum(), y_min + step * (1 + 1.5 * k)), "o", ms=5,
                color=_COLORS[k % len(_COLORS)], label=f"refused: {code} ({int(pick.sum())})")
    ax.set_ylim(y_min, y_max)
    ax.set_ylabel("contact angle (°)")
    ax.set_xlabel("acquisition time (UTC)")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    fig.tight_layout()
    return fig


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
