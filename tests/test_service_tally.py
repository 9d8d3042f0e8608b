"""The service's counts of what a run did: a file is one file however many of its versions."""

from __future__ import annotations

from pathlib import Path

from nwwatch.dashboard import metrics
from nwwatch.logsetup import get_logger
from nwwatch.service.batch import BatchReport, FileOutcome
from nwwatch.service.tally import Tally


def test_a_file_quarantined_in_several_versions_is_one_quarantined_file():
    # before: three bad versions of a.tif read "quarantined 3" in STATUS=, the stopping line
    # and /metrics, while nwwatch status listed one quarantined file
    tally, log = Tally(), get_logger("test")
    before = metrics.snapshot().get("frames_quarantined", 0)
    for n in range(3):
        tally.record(BatchReport(f"b{n}", [FileOutcome(Path("/acq/a.tif"), "quarantined",
                                                        reason="not a TIFF")]), log)
    tally.quarantined_on_inspection([Path("/acq/a.tif"), Path("/acq/b.tif")])
    tally.record(BatchReport("b9", [FileOutcome(Path("/acq/c.tif"), "failed",
                                                reason="unexpected")]), log)
    assert tally.quarantined_files == 2 and tally.failed_files == 1
    assert metrics.snapshot()["frames_quarantined"] - before == 2
    assert tally.status_text(0).endswith("failed 3 (quarantined 2)")
