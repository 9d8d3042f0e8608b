"""Segmenter.require_kind: a model of another kind is refused naming the file, kind and task."""

from __future__ import annotations

import pytest


def test_require_kind_names_the_file_the_kind_and_the_task(tmp_path):
    from onnx_models import build_threshold_model

    from nwwatch.segment.session import ModelLoadError, Segmenter

    model = tmp_path / "tomo.onnx"
    build_threshold_model(model, kind="tomogram")
    segmenter = Segmenter(model, providers=("cpu",))
    segmenter.require_kind("tomogram", "segmenting volumes")  # the right kind: no error
    with pytest.raises(ModelLoadError) as err:
        segmenter.require_kind("insitu", "labelling frames")
    assert str(err.value) == (f"{model}: a 'tomogram' model; labelling frames needs an "
                              "in-situ model")
