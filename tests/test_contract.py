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
        # before: tracebacks in `nwwatch model`, replay and the service (exit 1, restarted
        # by systemd), or (16.0) a TypeError on every frame of another size
        ({"size_multiple": "16"}, "size_multiple: '16' is not an integer"),
        ({"size_multiple": 16.0}, "size_multiple: 16.0 is not an integer"),
        ({"size_multiple": True}, "size_multiple"),
        ({"class_names": [0, 1, 2]}, "class_names"),
        ({"class_names": "bnd"}, "class_names: 'bnd' is not a list"),  # was read as 3 names
        ({"extra": []}, "extra: \\[\\] is not an object"),
        ({"validation_metrics": [0.9]}, "validation_metrics"),
        ({"validation_metrics": {"miou": "high"}}, "validation_metrics"),
        ({"arch": 3}, "arch"),
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
     ({"contract_version": "1"}, "contract_version: model has '1', this nwwatch reads 1"),
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
                 probabilities=("float", [None, 3, None, None]), softmax=True, pooled=False,
                 size_multiple=16):
    """A model whose tensors are declared as given (the graph computes a uniform softmax, or
    without ``softmax`` the image's mean per class, as logits would be); ``pooled``: the
    image goes through a 2 x 2 max pool and back, so H and W must be even."""
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
    nodes = [helper.make_node("Cast", ["image"], ["x0"], to=TensorProto.FLOAT)]
    if pooled:
        nodes += [helper.make_node("MaxPool", ["x0"], ["pool"], kernel_shape=[2, 2],
                                   strides=[2, 2]),
                  helper.make_node("Resize", ["pool", "", "scales"], ["up"], mode="nearest"),
                  helper.make_node("Add", ["x0", "up"], ["x"])]
    else:
        nodes.append(helper.make_node("Identity", ["x0"], ["x"]))
    nodes += [helper.make_node("ReduceMean", ["x", "axes"], ["x1"], keepdims=1),
             helper.make_node("Concat", ["x1"] * k, ["copies"], axis=1),
             helper.make_node("Softmax" if softmax else "Identity", ["copies"],
                              ["probabilities"], **({"axis": 1} if softmax else {})),
             helper.make_node("ArgMax", ["probabilities"], ["am"], axis=1, keepdims=0),
             helper.make_node("Cast", ["am"], ["labels"], to=types[labels[0]])]
    graph = helper.make_graph(nodes, "g", [value("image", image)],
                              [value("probabilities", probabilities), value("labels", labels)],
                              initializer=[axes] + ([helper.make_tensor(
                                  "scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])]
                                  if pooled else []))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    model.metadata_props.add(key="nwwatch", value=_meta(size_multiple=size_multiple).to_json())
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("change", "said"), [
    ({"image": ("float", [None, 3, None, None])},
     "'image' has 3 channels, not 1 (a grey frame, normalised); a network of 3 input channels "
     "gets image.expand(-1, 3, -1, -1) in the wrapper"),
    ({"image": ("double", [None, 1, None, None])}, "'image' is tensor(double), not "
                                                   "tensor(float)"),
    ({"image": ("float", [None, None, None])}, "'image' has 3 dimensions"),
    ({"labels": ("int64", [None, None, None])}, "'labels' is tensor(int64), not "
                                                "tensor(uint8): the argmax .to(torch.uint8)"),
    ({"probabilities": ("float", [None, 2, None, None])},
     "'probabilities' has 2 channels, not 3 (the classes of its metadata's class_names)"),
    # before: "service: loads it", then every frame of another size (or any batch) failed
    ({"image": ("float", [1, 1, 512, 512])}, "with N = 1, H = 512, W = 512 fixed"),
    ({"image": ("float", [None, 1, 256, 256])}, "with H = 256, W = 256 fixed"),
    # before: "with W = 1 fixed: ... N, H and W must be dynamic", which they were
    ({"image": ("float", [None, None, None, 1])},
     ", 1], channels last: the contract's tensors are channels first (N, C, H, W); turn it "
     "inside the wrapper (image.permute(0, 2, 3, 1) first"),
    # before: logits failed frame by frame in the measurement, sigmoids gave other rows
    ({"softmax": False}, "'probabilities' is not a softmax over its 3 classes"),
    # before: size_multiple 1 on a graph that needs even sizes: every odd frame failed
    ({"pooled": True, "size_multiple": 1},
     "ONNX Runtime fails on test inputs that are multiples of its size_multiple 1"),
])
def test_a_graph_that_breaks_the_contract_is_refused_when_it_loads(tmp_path, change, said):
    # before: `nwwatch model` said "service: loads it", the service started, and every
    # frame failed alike in ONNX Runtime, each file quarantined after its attempts
    from nwwatch.segment.session import ModelLoadError, Segmenter

    onnx_path = _graph_model(tmp_path / "m.onnx", **change)
    with pytest.raises(ModelLoadError, match=r"m\.onnx: ") as info:
        Segmenter(onnx_path, providers=("cpu",))
    assert said in str(info.value)
    declared = not {"softmax", "pooled"} & change.keys()  # else it is run to be found out
    assert ("breaks the nwwatch model contract" in str(info.value)) == declared


def test_a_graph_that_keeps_the_contract_loads(tmp_path):
    from nwwatch.segment.session import Segmenter

    Segmenter(_graph_model(tmp_path / "ok.onnx"), providers=("cpu",))
    # the multiple its pooling needs, declared: loads
    Segmenter(_graph_model(tmp_path / "even.onnx", pooled=True, size_multiple=2),
              providers=("cpu",))


def test_a_model_that_names_other_tensors_is_told_what_it_has(tmp_path):
    import onnx

    from nwwatch.segment.session import ModelLoadError, Segmenter

    model = onnx.load(_graph_model(tmp_path / "m.onnx"))
    for node in model.graph.node:
        node.input[:] = ["input" if n == "image" else n for n in node.input]
    model.graph.input[0].name = "input"
    onnx.save(model, tmp_path / "renamed.onnx")
    with pytest.raises(ModelLoadError, match=r"it has input\(s\) \['input'\] and output"):
        Segmenter(tmp_path / "renamed.onnx", providers=("cpu",))


def test_a_model_needing_a_larger_input_loads_without_a_line_on_stderr(tmp_path, capfd):
    # the load-time probe's first, small input fails for a model padding 80 px by
    # reflection; ONNX Runtime's own error line for it reached stderr (the service's log is
    # JSON lines alone); the larger probe passes and the model loads
    import onnx
    from onnx import TensorProto, helper

    from nwwatch.segment.session import Segmenter

    pad = 80
    tensor = helper.make_tensor
    nodes = [helper.make_node("Pad", ["image", "pads"], ["padded"], mode="reflect"),
             helper.make_node("Slice", ["padded", "starts", "ends", "axes"], ["x"]),
             helper.make_node("Concat", ["x", "x", "x"], ["c"], axis=1),
             helper.make_node("Softmax", ["c"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["am"], axis=1, keepdims=0),
             helper.make_node("Cast", ["am"], ["labels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                   ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        initializer=[tensor("pads", TensorProto.INT64, [8], [0, 0, pad, pad, 0, 0, pad, pad]),
                     tensor("starts", TensorProto.INT64, [2], [pad, pad]),
                     tensor("ends", TensorProto.INT64, [2], [-pad, -pad]),
                     tensor("axes", TensorProto.INT64, [2], [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    model.metadata_props.add(key="nwwatch", value=_meta(size_multiple=1).to_json())
    onnx.save(model, tmp_path / "reflect.onnx")
    capfd.readouterr()
    Segmenter(tmp_path / "reflect.onnx", providers=("cpu",), threads=1)
    assert capfd.readouterr().err == ""


def test_a_model_whose_weights_are_in_an_external_file_is_told_how_to_make_it_one(tmp_path):
    """torch's dynamo exporter writes M.onnx and M.onnx.data: ONNX Runtime, given the bytes,
    said 'Cannot parse data from external tensors' or 'model_path.empty() was false'."""
    import onnx

    from nwwatch.options import shipped_models
    from nwwatch.segment.session import ModelLoadError, Segmenter

    model = onnx.load(shipped_models()["insitu-default"])  # weights as initializers
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 0
    with pytest.raises(ModelLoadError, match=r"ext.onnx: its weights are in a separate file .*"
                                             r"onnx.save\(onnx.load\('ext.onnx'\), "
                                             r"'ext-one.onnx'\)"):
        Segmenter(tmp_path / "ext.onnx", providers=("cpu",))
    onnx.save(onnx.load(tmp_path / "ext.onnx"), tmp_path / "ext-one.onnx")  # the advice
    Segmenter(tmp_path / "ext-one.onnx", providers=("cpu",))


def test_channels_last_probabilities_are_told_to_turn():
    from nwwatch.segment.contract import graph_problem

    # with H and W fixed too ("has 256 channels, not 1"), and 3 channels last ("W = 3 fixed")
    for image in ([1, 256, 256, 1], ["N", 256, 256, 1]):
        problem = graph_problem({"image": ("tensor(float)", image)}, _meta(size_multiple=1))
        assert "channels last" in problem and "image.permute(0, 2, 3, 1) first" in problem
    problem = graph_problem({"image": ("tensor(float)", ["N", "H", "W", 3])},
                            _meta(size_multiple=1))
    assert "image.permute(0, 2, 3, 1).expand(-1, -1, -1, 3) first" in problem, problem
    problem = graph_problem({"probabilities": ("tensor(float)", ["N", 256, 256, 3])},
                            _meta(size_multiple=1))
    assert "channels last" in problem, problem
    problem = graph_problem({"probabilities": ("tensor(float)", ["N", "H", "W", 3])},
                            _meta(size_multiple=1))
    assert problem.endswith("channels last: the contract's tensors are channels first (N, C, "
                            "H, W); turn it inside the wrapper (probabilities.permute(0, 3, "
                            "1, 2) last in forward)")
