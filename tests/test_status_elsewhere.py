"""``nwwatch status --out RESULTS`` does not read a results folder's own ledger once the
results are kept by a ledger elsewhere (that one stopped counting when they moved): it reads
the one recorded, as ``nwwatch dashboard RESULTS`` does, and says so."""

from __future__ import annotations

import pytest
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
    # then: exit 1, "a second ledger would process files into these results again. Use that
    # one ... or move it ... and delete ..." -- advice for writers, to a command that reads
    # (and the layout of the example configuration, a [state] ledger in /var/lib/nwwatch)
    for extra in ([], ["--json"]):
        shown = run_nwwatch("status", "--out", str(res), *extra)
        assert shown.returncode == 0, shown.stderr
        said = " ".join(shown.stderr.split())
        assert f"the results are kept by the ledger {other}" in said, said
        assert f"ledger: {other}" in shown.stdout or f'"ledger": "{other}"' in shown.stdout


def test_status_takes_the_results_folder_as_report_and_compact_do(tmp_path):
    # was: exit 2, "Got unexpected extra argument (res)", nothing about --out
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_small_tomogram(acq / "v.tif")
    assert replay(acq, res, kind="tomogram", model=model(tmp_path / "m", kind="tomogram")).done
    by_argument = run_nwwatch("status", str(res), "--json")
    assert by_argument.returncode == 0, by_argument.stderr
    assert by_argument.stdout == run_nwwatch("status", "--out", str(res), "--json").stdout
    other = tmp_path / "other"
    other.mkdir()
    both = run_nwwatch("status", str(res), "--out", str(other))
    assert both.returncode == 2
    assert f"give the results folder once: RESULTS {res} or --out {other}" in both.stderr
    with_config = run_nwwatch("status", str(res), "--config", str(tmp_path / "c.toml"))
    assert with_config.returncode == 2, with_config.stderr


def test_status_config_reads_the_results_while_a_model_is_missing(tmp_path):
    """The service stops with exit 78 when a [[watch]] model file goes missing, and
    deploy/README.md then has the admin run `nwwatch status --config`: it was refused for the
    same missing model ("watch[0].model: file not found", exit 1), although it reads only the
    results and the ledger."""
    from click.testing import CliRunner
    from onnx_models import build_threshold_model
    from servicekit import paint_insitu, write_config

    from nwwatch.io import write_frame_tiff
    from nwwatch.service import replay
    from nwwatch.service.cli import status
    from nwwatch.service.config import ConfigError, load_config

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "f.tif", paint_insitu(120.0))
    mine = build_threshold_model(tmp_path / "mine.onnx")
    config = write_config(tmp_path / "c.toml", acq, tmp_path / "res", mine)
    replay(acq, tmp_path / "res", kind="insitu", config=config)
    mine.rename(tmp_path / "mine.onnx.old")  # moved, or its share not mounted
    with pytest.raises(ConfigError, match=r"watch\[0\]\.model: file not found"):
        load_config(config)  # the service's start: still refused
    result = CliRunner().invoke(status, ["--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "files: 1 done" in result.output
    # the other keys are still checked
    config.write_text(config.read_text().replace("max_attempts = 3", "max_attempts = 0"))
    result = CliRunner().invoke(status, ["--config", str(config)])
    assert result.exit_code == 1 and "retry.max_attempts" in result.output
