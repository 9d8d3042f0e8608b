"""nwwatch.paths.lies_inside: inside a folder, symbolic links resolved."""

from __future__ import annotations

import os

import pytest

from nwwatch.paths import lies_inside


def test_a_path_lies_inside_its_folder_and_the_folder_itself(tmp_path):
    (tmp_path / "res" / "qa").mkdir(parents=True)
    assert lies_inside(tmp_path / "res", tmp_path / "res")
    assert lies_inside(tmp_path / "res" / "qa", tmp_path / "res")
    assert lies_inside(tmp_path / "res" / "not" / "yet", tmp_path / "res")  # need not exist
    assert not lies_inside(tmp_path / "res", tmp_path / "res" / "qa")
    assert not lies_inside(tmp_path / "res-2", tmp_path / "res")  # a prefix is not a parent
    assert not lies_inside(tmp_path / "res" / ".." / "acq", tmp_path / "res")
    assert lies_inside(str(tmp_path / "res" / "qa" / ".."), str(tmp_path / "res"))


def test_symbolic_links_are_followed_on_both_sides(tmp_path, monkeypatch):
    (tmp_path / "acq").mkdir()
    (tmp_path / "res").mkdir()
    (tmp_path / "acq" / "out").symlink_to(tmp_path / "res")  # looks inside acq, is not
    (tmp_path / "into-acq").symlink_to(tmp_path / "acq")
    assert not lies_inside(tmp_path / "acq" / "out", tmp_path / "acq")
    assert lies_inside(tmp_path / "acq" / "out" / "x", tmp_path / "res")
    assert lies_inside(tmp_path / "into-acq" / "f.tif", tmp_path / "acq")
    assert lies_inside(tmp_path / "acq", tmp_path / "into-acq")
    monkeypatch.chdir(tmp_path)  # relative paths from the current directory
    assert lies_inside("into-acq/sub", tmp_path / "acq")


def test_a_symbolic_link_loop_raises_as_path_resolve_does(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(RuntimeError, match="Symlink loop"):
        lies_inside(tmp_path / "loop" / "x", tmp_path)
