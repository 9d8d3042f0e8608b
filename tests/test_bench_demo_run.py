"""The demo-run bench (bench/bench_demo_run.py): refused frames are counted per reason code,
the interface's scatter and its cost are read from the ``interface_not_line`` reason text
(the other form of that code, too few points on one line, is counted apart) and σ's range is
taken from the ``angle_uncertain`` rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_demo_run import refused_detail


def _row(code: str, reason: str, valid: bool = False, sigma: float | None = None) -> dict:
    return {"status": "ok" if valid else "fit_failed", "reason_code": code, "reason": reason,
            "angle_valid": valid, "contact_angle_uncertainty_deg": sigma}


def test_refused_detail_counts_reasons_and_reads_the_ranges(tmp_path: Path) -> None:
    rows = [
        _row("ok", "", valid=True, sigma=0.8),
        _row("interface_not_line", "the wire/droplet interface scatters 3.3 px about its "
             "line, 6.1 deg at this droplet size (> 6 deg)"),
        _row("interface_not_line", "the wire/droplet interface scatters 9.9 px about its "
             "line, 16.8 deg at this droplet size (> 6 deg)"),
        _row("interface_not_line", "only 40 % of the interface points lie on one line"),
        _row("angle_uncertain", "the angle is uncertain by +-3.9 deg (> 1.5)", sigma=3.93),
        _row("angle_uncertain", "the angle is uncertain by +-11.3 deg (> 1.5)", sigma=11.27),
        _row("labels_noisy", "more than 64 wire regions"),
    ]
    folder = tmp_path / "frames" / "acquisition=x"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part.parquet")

    detail = refused_detail(tmp_path / "frames")

    assert detail["frames"] == 7 and detail["valid"] == 1
    assert detail["refused_by_reason"] == {"interface_not_line": 3, "angle_uncertain": 2,
                                           "labels_noisy": 1}
    assert detail["interface_not_line_scatter_px"] == [3.3, 9.9]
    assert detail["interface_not_line_cost_deg"] == [6.1, 16.8]
    assert detail["interface_not_line_without_scatter"] == 1
    assert detail["angle_uncertain_sigma_deg"] == [3.93, 11.27]
    assert len(detail["angle_uncertain_reasons"]) == 2
