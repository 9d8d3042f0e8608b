import json

import pytest

from nwwatch.segment.contract import ModelMetadata, ModelMetadataError


def _meta(**kw):
    base = dict(kind="insitu", class_names=("background", "nanowire", "droplet"), arch="unet",
                paradigm="supervised", size_multiple=16)
    base.update(kw)
    return ModelMetadata(**base)


def test_round_trip():
    meta = _meta(validation_metrics={"miou": 0.98}, extra={"quantized": "int8"})
    assert ModelMetadata.from_json(meta.to_json()) == meta


@pytest.mark.parametrize(
    "change, key",
    [
        ({"kind": "movie"}, "kind"),
        ({"size_multiple": 0}, "size_multiple"),
        ({"class_names": ["x"]}, "class_names"),
        ({"normalization_scope": "slice"}, "normalization_scope"),
    ],
)
def test_invalid_values_name_the_key(change, key):
    raw = json.loads(_meta().to_json())
    raw.update(change)
    with pytest.raises(ModelMetadataError, match=key):
        ModelMetadata.from_json(json.dumps(raw))


@pytest.mark.parametrize(
    "change, key",
    [({"normalization": "zscore"}, "normalization"), ({"contract_version": 99}, "contract_version"),
     ({"bogus": 1}, "bogus")],
)
def test_incompatible_models_are_refused(change, key):
    raw = json.loads(_meta().to_json())
    raw.update(change)
    with pytest.raises(ModelMetadataError, match=key):
        ModelMetadata.from_json(json.dumps(raw))


def test_missing_key_and_bad_json():
    raw = json.loads(_meta().to_json())
    del raw["arch"]
    with pytest.raises(ModelMetadataError, match="arch"):
        ModelMetadata.from_json(json.dumps(raw))
    with pytest.raises(ModelMetadataError, match="JSON"):
        ModelMetadata.from_json("{not json")


def _graph_model(path, image=("float", [None, 1, None, None]),
                 labels=("uint8", [None, None, None]),
                 probabilities=("float", [None, 3, None, None])):
    """A model whose tensors are declared as given (the graph computes nothing useful)."""
    import onnx
    from onnx import TensorProto, helper

    types = {"float": TensorProto.FLOAT, "double": TensorProto.DOUBLE,
             "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}

    def value(name, spec):
        dtype, dims = spec
        return helper.make_tensor_value_info(
            name, types[dtype], [d if d is not None else f"d{i}" for i, d in enumerate(dims)])

    k = probabilities[1][1]  # channels: copies of the image's mean over its channels
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x", "axes"], ["x1"], keepdims=1),
             helper.make_node("Concat", ["x1"] * k, ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["am"], axis=1, keepdims=0),
             helper.make_node("Cast", ["am"], ["labels"], to=types[labels[0]])]
    graph = helper.make_graph(nodes, "g", [value("image", image)],
                              [value("probabilities", probabilities), value("labels", labels)],
                              initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    model.metadata_props.add(key="nwwatch", value=_meta().to_json())
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("change", "said"), [
    ({"image": ("float", [None, 3, None, None])}, "'image' has 3 channels, not 1"),
    ({"image": ("double", [None, 1, None, None])}, "'image' is tensor(double), not "
                                                   "tensor(float)"),
    ({"image": ("float", [None, None, None])}, "'image' has 3 dimensions"),
    ({"labels": ("int64", [None, None, None])}, "'labels' is tensor(int64), not "
                                                "tensor(uint8)"),
    ({"probabilities": ("float", [None, 2, None, None])},
     "'probabilities' has 2 channels, not 3 (the classes of its metadata's class_names)"),
])
def test_a_graph_that_breaks_the_contract_is_refused_when_it_loads(tmp_path, change, said):
    # before: `nwwatch model` said "service: loads it", the service started, and every
    # frame failed alike in ONNX Runtime, each file quarantined after its attempts
    from nwwatch.segment.session import ModelLoadError, Segmenter

    onnx_path = _graph_model(tmp_path / "m.onnx", **change)
    with pytest.raises(ModelLoadError, match="breaks the nwwatch model contract") as info:
        Segmenter(onnx_path, providers=("cpu",))
    assert said in str(info.value)


def test_a_graph_that_keeps_the_contract_loads(tmp_path):
    from nwwatch.segment.session import Segmenter

    Segmenter(_graph_model(tmp_path / "ok.onnx"), providers=("cpu",))
