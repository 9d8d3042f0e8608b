"""`nwwatch demo`: the stress video is the scene its help describes, and a run with no valid
angle says so instead of printing NaN figures."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from nwwatch.demo import angle_errors, demo, summary_line


def test_a_summary_without_a_valid_angle_says_so():
    nan = float("nan")
    line = summary_line(angle_errors(np.array([100.0, 110.0]), np.array([nan, nan])))
    assert line == "0/2 frames measured: no valid angle"
    assert "nan" not in line.lower()


def test_the_stress_video_is_a_small_droplet_at_a_very_low_dose(tmp_path):
    out = tmp_path / "stress"
    r = CliRunner().invoke(demo, [str(out), "--stress", "--frames", "4", "--size", "128"])
    assert r.exit_code == 0, r.output
    assert "nan" not in r.output.lower()
    truth = pq.read_table(out / "video" / "truth.parquet").to_pydict()
    assert set(truth["dose_e_per_px"]) == {35.0}
    # 35 px at 512 px, scaled to the frame size.
    assert all(math.isclose(radius, 35.0 * 128 / 512, rel_tol=0.1) for radius in truth["R_px"])
