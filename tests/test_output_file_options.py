"""An output file given as a folder (``--out results/``) is a usage error naming it, for
every command that writes one file: Path dropped the trailing '/', and a file named
``results`` was written where the user meant a folder."""

from __future__ import annotations

import cv2
import pytest
from ideal_caps import render_ideal_cap
from servicekit import run_nwwatch
from test_dashboard_data import frame_rows, write


@pytest.mark.parametrize("command", ["measure", "report", "evaluate"])
def test_an_output_file_that_ends_in_a_slash_is_refused(tmp_path, command):
    labels = tmp_path / "labels.png"
    cv2.imwrite(str(labels), render_ideal_cap((128, 128), 112.0, 25.0, 35.0, (70.3, 60.8)).labels)
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    data = tmp_path / "DATA"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
        cv2.imwrite(str(data / sub / "f.png"), cv2.imread(str(labels), cv2.IMREAD_UNCHANGED))
    out = tmp_path / "out"
    option, example = {"measure": ("--out", "angles.parquet"), "report": ("--out", "report.html"),
                       "evaluate": ("--json", "report.json")}[command]
    args = {"measure": [str(labels)], "report": [str(results)],
            "evaluate": ["insitu-default", str(data)]}[command]
    run = run_nwwatch(command, *args, option, f"{out}/")
    assert run.returncode == 2, run.stdout + run.stderr
    said = " ".join(run.stderr.split())
    assert (f"Invalid value for '{option}': {out}/ names a folder (it ends in '/'); give the "
            f"file to write in it, e.g. {out}/{example}") in said
    assert not out.exists()
    run = run_nwwatch(command, *args, option, f"{out}/{example}")  # the file in it: written
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / example).is_file()


@pytest.mark.parametrize("command", ["measure", "report"])
def test_an_output_file_that_ends_in_a_dot_is_refused(tmp_path, command):
    # 'out/.' means the folder too, and Path drops the '.' as it drops a '/': a file named
    # 'out' was written
    labels = tmp_path / "labels.png"
    cv2.imwrite(str(labels), render_ideal_cap((128, 128), 112.0, 25.0, 35.0, (70.3, 60.8)).labels)
    results = tmp_path / "res"
    write(results, "frames-1.parquet", frame_rows("/acq/run1", [100.0, 110.0]))
    out = tmp_path / "out"
    example = {"measure": "angles.parquet", "report": "report.html"}[command]
    args = {"measure": [str(labels)], "report": [str(results)]}[command]
    run = run_nwwatch(command, *args, "--out", f"{out}/.")
    assert run.returncode == 2, run.stdout + run.stderr
    said = " ".join(run.stderr.split())
    assert (f"{out}/. names a folder (it ends in '/.'); give the file to write in it, e.g. "
            f"{out}/{example}") in said, said
    assert not out.exists()
