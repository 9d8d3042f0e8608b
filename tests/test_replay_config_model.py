"""`nwwatch replay --config`: a folder the configuration watches is replayed with the model
its [[watch]] names, as the service would process it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from onnx_models import build_threshold_model
from servicekit import paint_insitu, write_config

from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.filehash import file_sha256
from nwwatch.io import write_frame_tiff
from nwwatch.service import replay
from nwwatch.service.config import ConfigError


def _acquisition(folder):
    folder.mkdir(parents=True)
    write_frame_tiff(folder / "f.tif", paint_insitu(120.0))
    return folder


def _models_used(out):
    return set(pq.read_table(out / "frames").to_pandas().model_sha256)


def test_replay_with_config_uses_the_watch_s_model(tmp_path):
    # before: [[watch]] model was ignored and the shipped model ran, so a fine-tuned model
    # put in the configuration (docs/training.md) was not the one replay checked
    acq = _acquisition(tmp_path / "acq")
    mine = build_threshold_model(tmp_path / "mine.onnx")
    config = write_config(tmp_path / "c.toml", acq, tmp_path / "results", mine)
    summary = replay(acq, tmp_path / "out", kind="insitu", config=config)
    assert summary.complete and _models_used(tmp_path / "out") == {file_sha256(mine)}
    # A file inside the watched folder too; --model still wins.
    replay(acq / "f.tif", tmp_path / "out2", kind="insitu", config=config)
    assert _models_used(tmp_path / "out2") == {file_sha256(mine)}
    other = build_threshold_model(tmp_path / "other.onnx", sharpness=4.0)
    replay(acq, tmp_path / "out3", kind="insitu", config=config, model=other)
    assert _models_used(tmp_path / "out3") == {file_sha256(other)}


def test_replay_with_config_outside_its_watches_or_across_models(tmp_path):
    acq = _acquisition(tmp_path / "acq")
    elsewhere = _acquisition(tmp_path / "elsewhere")
    mine = build_threshold_model(tmp_path / "mine.onnx")
    config = write_config(tmp_path / "c.toml", acq, tmp_path / "results", mine)
    # A folder no [[watch]] holds: the default model, as before.
    replay(elsewhere, tmp_path / "out", kind="insitu", config=config)
    assert _models_used(tmp_path / "out") == {file_sha256(DEFAULT_INSITU_MODEL)}
    # Folders the configuration would process with two models: refused, naming them.
    with pytest.raises(ConfigError, match=r"model.*mine\.onnx.*insitu-default\.onnx.*--model"):
        replay([acq, elsewhere], tmp_path / "out4", kind="insitu", config=config)
    assert not (tmp_path / "out4").exists()


def test_replay_with_config_of_a_tomogram_folder_without_kind_tomogram(tmp_path):
    """`nwwatch replay TOMOS --config C` (no --kind) on the folder of a tomogram [[watch]]
    read every volume as in-situ frames with the shipped model: one flagged row a slice, in
    what may be the service's own results folder. Now refused, naming the option; with
    --kind tomogram the [[watch]]'s model runs, and --model still reads them as frames."""
    import numpy as np
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import write_volume_tiff

    tomos = tmp_path / "tomos"
    tomos.mkdir()
    volume = np.full((4, 24, 24), TOMOGRAM_GREY[0], np.uint8)
    volume[1:3, 5:15, 5:15] = TOMOGRAM_GREY[1]
    write_volume_tiff(tomos / "v.tif", volume)
    tomo_model = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    config = write_config(tmp_path / "c.toml", tomos, tmp_path / "results", tomo_model)
    config.write_text(config.read_text().replace('kind = "insitu"', 'kind = "tomogram"', 1))
    with pytest.raises(ConfigError, match="--kind tomogram") as info:
        replay(tomos, tmp_path / "out", kind="insitu", config=config)
    assert "[[watch]] of kind 'tomogram'" in str(info.value) and "--model" in str(info.value)
    assert not (tmp_path / "out").exists()
    summary = replay(tomos, tmp_path / "out2", kind="tomogram", config=config)
    assert summary.complete and summary.frames == 1
    frames = replay(tomos, tmp_path / "out3", kind="insitu", config=config,
                    model=DEFAULT_INSITU_MODEL)
    assert frames.frames == 4  # asked for: one row a slice


def _sources(out):
    return sorted(Path(s).name for s in pq.read_table(out / "frames").to_pandas().source)


def test_replay_with_config_takes_the_watch_s_patterns(tmp_path):
    """`nwwatch replay ACQ --config C` wrote rows for files the [[watch]]'s patterns and
    ignore_patterns leave out (a gain reference, notes), which the service never processes,
    into what may be the service's own results. Now a watched folder (or file) is listed
    with its watch's names, the files left out are named on a note line, and a folder
    outside every watch keeps the default names."""
    acq = tmp_path / "acq"
    acq.mkdir()
    for angle, name in zip((100.0, 120.0, 140.0),
                           ("run_001.tif", "ref_gain.tif", "notes_001.tif"), strict=True):
        write_frame_tiff(acq / name, paint_insitu(angle))  # distinct contents: a row each
    mine = build_threshold_model(tmp_path / "mine.onnx")
    config = write_config(tmp_path / "c.toml", acq, tmp_path / "results", mine)
    text = config.read_text().replace(
        'kind = "insitu"\n', 'kind = "insitu"\npatterns = ["run_*.tif"]\n'
                             'ignore_patterns = [".*", "*_gain.tif"]\n', 1)
    config.write_text(text)
    summary = replay(acq, tmp_path / "out", kind="insitu", config=config)
    assert summary.complete and summary.files == 1
    assert _sources(tmp_path / "out") == ["run_001.tif"]
    assert sorted(p.name for p in summary.not_in_patterns) == ["notes_001.tif", "ref_gain.tif"]
    note = next(line for line in summary.lines() if "not replayed" in line)
    assert "watch[0] patterns run_*.tif" in note and "ref_gain.tif" in note
    # Files named (a shell glob) are judged by the same names.
    named = replay(sorted(acq.iterdir()), tmp_path / "out2", kind="insitu", config=config)
    assert _sources(tmp_path / "out2") == ["run_001.tif"] and len(named.not_in_patterns) == 2
    # Only left-out files named: nothing processed, the last line says why.
    none = replay(acq / "ref_gain.tif", tmp_path / "out3", kind="insitu", config=config)
    assert none.files == 0 and "watch[0] patterns run_*.tif" in none.lines()[-1]
    # Outside every watch: the default names, as before.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for angle, name in zip((100.0, 120.0), ("run_001.tif", "ref_gain.tif"), strict=True):
        write_frame_tiff(elsewhere / name, paint_insitu(angle))
    outside = replay(elsewhere, tmp_path / "out4", kind="insitu", config=config)
    assert outside.files == 2 and not outside.not_in_patterns
    # Without --config: the default names.
    replay(acq, tmp_path / "out5", kind="insitu", model=mine)
    assert _sources(tmp_path / "out5") == ["notes_001.tif", "ref_gain.tif", "run_001.tif"]
    # A watch without its sub-folders (recursive = false): their files are not replayed;
    # an MRC file the patterns leave out is named once, as left out by them (it was also
    # named as a file "an in-situ replay does not look for", with no advice after the colon)
    import mrcfile

    (acq / "sub").mkdir()
    write_frame_tiff(acq / "sub" / "run_002.tif", paint_insitu(130.0))
    with mrcfile.new(acq / "other.mrc") as mrc:
        mrc.set_data(np.zeros((2, 8, 8), np.float32))
    config.write_text(text.replace('patterns = ["run_*.tif"]\n',
                                   'patterns = ["run_*.tif"]\nrecursive = false\n', 1))
    flat = replay(acq, tmp_path / "out6", kind="insitu", config=config)
    assert _sources(tmp_path / "out6") == ["run_001.tif"]
    assert "run_002.tif" in {p.name for p in flat.not_in_patterns}
    assert any("sub-folders, which it does not watch (recursive = false)" in line
               for line in flat.lines()), flat.lines()
    assert not any("does not look for" in line for line in flat.lines()), flat.lines()
    below = replay(acq / "sub", tmp_path / "out7", kind="insitu", config=config)
    assert below.files == 0 and [p.name for p in below.not_in_patterns] == ["run_002.tif"]
    named = replay(acq / "sub" / "run_002.tif", tmp_path / "out8", kind="insitu",
                   config=config)
    assert named.files == 0 and [p.name for p in named.not_in_patterns] == ["run_002.tif"]
