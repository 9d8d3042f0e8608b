"""A rebuilt ledger keeps the processing times the rows record, not the files' mtimes: a
results folder copied or restored (the usual reason to rebuild) has files of new mtimes."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner
from onnx_models import TOMOGRAM_GREY
from servicekit import model

from nwwatch.cli import main
from nwwatch.io import write_volume_tiff
from nwwatch.service import replay
from nwwatch.service.rebuild import batch_files, rebuild_ledger


def _volume(path: Path, width: int) -> None:
    vol = np.full((6, 24, 24), TOMOGRAM_GREY[0], np.uint8)
    vol[1:5, 4:4 + width, 6:20] = TOMOGRAM_GREY[1]
    write_volume_tiff(path, vol)


def test_status_after_a_rebuild_shows_when_the_rows_were_processed(tmp_path):
    # Was: the rebuilt items took the Parquet file's mtime as their processing time, so after
    # `nwwatch ledger rebuild` of a copied folder `nwwatch status` said "last: ... at" the
    # copy's time, and named the file whose Parquet file was copied last.
    tomo_model = model(tmp_path / "m", kind="tomogram")
    res = tmp_path / "res"
    for name, width in (("first", 8), ("second", 10)):
        acq = tmp_path / name
        acq.mkdir()
        _volume(acq / f"{name}.tif", width)
        assert replay(acq, res, kind="tomogram", model=tomo_model).done == 1
        time.sleep(0.05)
    processed = {}
    for file in batch_files(res):
        row = pq.read_table(file, columns=["source", "processed_at"]).to_pylist()[0]
        processed[Path(row["source"]).stem] = row["processed_at"]
    assert processed["second"] > processed["first"]
    # A copy of the folder: new mtimes, the first file's copied last.
    now = time.time()
    for file in batch_files(res):
        days = 2 if "first" in pq.read_table(file).column("source")[0].as_py() else 1
        os.utime(file, (now + days * 86400, now + days * 86400))

    report = rebuild_ledger(res)
    assert report.items == 2 and report.moved_aside
    shown = CliRunner().invoke(main, ["status", "--out", str(res)])
    assert shown.exit_code == 0, shown.output
    last = next(line for line in shown.output.splitlines() if line.startswith("last:"))
    assert last == (f"last: {tmp_path / 'second' / 'second.tif'} (1 row) at "
                    f"{processed['second']:%Y-%m-%d %H:%M:%S} UTC")
    as_json = CliRunner().invoke(main, ["status", "--out", str(res), "--json"])
    shown_at = datetime.fromisoformat(json.loads(as_json.output)["last"]["processed_at"])
    assert abs((shown_at - processed["second"]).total_seconds()) < 1e-3
