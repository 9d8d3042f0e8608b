"""The one reader of an ONNX file's nwwatch metadata: ONNX Runtime's metadata map and the
``onnx`` model's properties give the same metadata, and every refusal names the file."""

from __future__ import annotations

import pytest
from onnx_models import build_threshold_model

from nwwatch.segment.contract import ModelMetadataError
from nwwatch.segment.session import ModelLoadError, Segmenter
from training.modelmeta import model_file_metadata


def test_the_training_reader_and_the_runtime_read_the_same_metadata(tmp_path):
    path = build_threshold_model(tmp_path / "m.onnx", size_multiple=8)
    meta = model_file_metadata(path)
    assert meta == Segmenter(path, providers=("cpu",), threads=1).metadata
    assert meta.size_multiple == 8


def test_a_model_without_metadata_is_refused_naming_the_file(tmp_path):
    path = build_threshold_model(tmp_path / "plain.onnx", with_metadata=False)
    expected = (f"{path}: no 'nwwatch' metadata in the model (it has no metadata); a model "
                "trained elsewhere gets it as docs/models.md, 'A model trained elsewhere', "
                "shows: model.metadata_props.add(key='nwwatch', value=")
    with pytest.raises(ModelMetadataError) as training_error:
        model_file_metadata(path)
    assert str(training_error.value).startswith(expected), str(training_error.value)
    with pytest.raises(ModelLoadError) as runtime_error:
        Segmenter(path, providers=("cpu",), threads=1)
    assert str(runtime_error.value) == str(training_error.value)
    # a key of another spelling is named: the model has metadata, not nwwatch's
    import onnx

    model = onnx.load(path)
    model.metadata_props.add(key="nwwatch_metadata", value="{}")
    onnx.save(model, tmp_path / "misspelt.onnx")
    with pytest.raises(ModelLoadError, match=r"its metadata keys: \['nwwatch_metadata'\]"):
        Segmenter(tmp_path / "misspelt.onnx", providers=("cpu",), threads=1)


def test_invalid_metadata_names_the_file_and_the_key(tmp_path):
    path = build_threshold_model(tmp_path / "bad.onnx", metadata={"contract_version": 99})
    with pytest.raises(ModelMetadataError, match=rf"^{path}: contract_version: model has 99"):
        model_file_metadata(path)


def test_a_file_that_is_not_onnx_is_refused_naming_it(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("not a model\n")
    with pytest.raises(ModelMetadataError, match=rf"^{path}: not a readable ONNX model"):
        model_file_metadata(path)
