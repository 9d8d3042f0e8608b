"""``nwwatch status --out RESULTS`` does not read a results folder's own ledger once the
results are kept by a ledger elsewhere: that one stopped counting when they moved."""

from __future__ import annotations

from servicekit import model, run_nwwatch, write_small_tomogram

from nwwatch.service import replay


def test_status_of_results_kept_by_a_ledger_elsewhere_names_that_ledger(tmp_path):
    # Was: after `nwwatch ledger rebuild RES --ledger OTHER` (or a service whose [state]
    # ledger moved), `status --out RES` read RES/ledger.sqlite, left behind, and showed its
    # counts (exit 0) without a word, however many files the other ledger processed since.
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_small_tomogram(acq / "v.tif")
    assert replay(acq, res, kind="tomogram", model=model(tmp_path / "m", kind="tomogram")).done
    assert run_nwwatch("status", "--out", str(res)).returncode == 0
    other = tmp_path / "state" / "ledger.sqlite"
    other.parent.mkdir()
    rebuilt = run_nwwatch("ledger", "rebuild", str(res), "--ledger", str(other))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (res / "ledger.sqlite").is_file() and other.is_file()
    for extra in ([], ["--json"]):
        shown = run_nwwatch("status", "--out", str(res), *extra)
        assert shown.returncode == 1, shown.stdout
        said = " ".join(shown.stderr.split())
        assert f"its ledger is {other}" in said and f"not {res / 'ledger.sqlite'}" in said
        assert "files:" not in shown.stdout and shown.stdout == ""
