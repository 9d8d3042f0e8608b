"""ONNX export verified against torch, the runtime's padding, broken exports, INT8 rule."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from nwwatch.filehash import file_sha256  # noqa: E402
from nwwatch.segment.contract import METADATA_KEY, OPSET, ModelMetadata  # noqa: E402
from nwwatch.segment.session import Segmenter  # noqa: E402
from training.export import ExportVerificationError, export_onnx  # noqa: E402
from training.models import build_model  # noqa: E402
from training.quantize import quantize_int8  # noqa: E402

# Tiny tensors: one thread avoids OpenMP barrier stalls on a loaded two-core machine.
torch.set_num_threads(1)

CLASSES = ("background", "nanowire", "droplet")
TINY = {
    "unet": dict(widths=(2, 4, 4, 8)),
    "unet-paper": dict(widths=(2, 4, 8)),
    "pspnet": dict(base_width=4, layers=(1, 1, 1, 1), decoder_widths=(8, 8, 8)),
}


def metadata_for(model, arch="test", **extra) -> ModelMetadata:
    return ModelMetadata(
        kind="insitu",
        class_names=CLASSES,
        arch=arch,
        paradigm="supervised",
        size_multiple=int(getattr(model, "size_multiple", 1)),
        training_data_sha256="ab" * 32,
        validation_metrics={"miou": 0.5},
        extra=extra,
    )


def decisive(arch: str) -> nn.Module:
    """A tiny random model whose head is scaled so that most pixels are far from a tie."""
    torch.manual_seed(0)
    model = build_model(arch, **TINY[arch]).eval()
    # Random BatchNorm statistics so that eval-mode normalisation is really exported.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        spread = model(torch.rand(2, 1, 64, 64) * 2 - 1).std()
        model.decoder.head.weight.mul_(10.0 / spread)
        # Distinct biases decide the pixels where every (ReLU) head input is zero.
        model.decoder.head.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    return model


def torch_reference(model, images: np.ndarray, multiple: int):
    """Labels and probabilities of ``model`` on (N, H, W), padded like the runtime pads."""
    n, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, (-h) % multiple), (0, (-w) % multiple)), mode="reflect")
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(padded[:, None])), dim=1)
    probs = probs[:, :, :h, :w].numpy()
    return probs.argmax(axis=1).astype(np.uint8), probs


@pytest.mark.parametrize("arch", sorted(TINY))
def test_export_of_each_architecture_matches_torch(tmp_path, arch):
    model = decisive(arch).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = model.size_multiple
    path = tmp_path / f"{arch}.onnx"
    shapes = [(1, 3 * m, 5 * m), (3, 4 * m, 2 * m)]
    report = export_onnx(
        model, path, metadata_for(model, arch), verify_shapes=shapes, exporter="legacy"
    )
    assert [c.shape for c in report.checks] == shapes
    assert report.max_abs_diff <= 1e-4
    assert report.min_argmax_agreement > 0.999
    assert report.sha256 == file_sha256(path) and report.file_size_bytes == path.stat().st_size
    assert report.trace_shape not in shapes
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp or .data file
    # The caller's model is untouched: still in training mode, same weights and statistics.
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()

    # Odd sizes through the runtime, which pads to the size multiple and crops back.
    segmenter = Segmenter(path, providers=("cpu",), threads=1)
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (2, 3 * m + 3, 2 * m + 5)).astype(np.float32)
    result = segmenter.segment(images)
    labels, probs = torch_reference(model, images, m)
    assert result.labels.shape == images.shape and result.labels.dtype == np.uint8
    np.testing.assert_allclose(result.probabilities, probs, atol=1e-4)
    top2 = np.sort(probs, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2e-4
    assert decided.mean() > 0.9
    assert np.array_equal(result.labels[decided], labels[decided])


def test_default_dynamo_export_contract_and_metadata_round_trip(tmp_path):
    model = decisive("unet")
    metadata = metadata_for(model, "unet", note="round trip")
    path = tmp_path / "sub" / "model.onnx"
    report = export_onnx(model, path, metadata)  # default exporter and default shapes
    assert report.exporter == "dynamo" and len(report.checks) == 3
    assert {c.shape[0] for c in report.checks} == {1, 2, 3}
    assert any(c.shape[1] != c.shape[2] for c in report.checks)

    proto = onnx.load(str(path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    assert proto.model_version == 1
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_value") for d in dims] == [False, True, False, False]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props[METADATA_KEY])["extra"] == {"note": "round trip"}

    segmenter = Segmenter(path, providers=("cpu",), threads=1)
    assert segmenter.metadata == metadata
    assert segmenter.model_sha256 == report.sha256
    # Odd, non-square size through the runtime's padding.
    images = np.random.default_rng(2).uniform(-1, 1, (1, 45, 70)).astype(np.float32)
    labels, probs = torch_reference(model, images, model.size_multiple)
    result = segmenter.segment(images)
    np.testing.assert_allclose(result.probabilities, probs, atol=1e-4)
    assert np.mean(result.labels == labels) > 0.999


class ExportsDifferently(nn.Module):
    """Deliberately broken: the traced graph differs from eager torch by a small offset."""

    size_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        logits = self.conv(x)
        if torch.onnx.is_in_onnx_export():
            logits = logits + torch.tensor([0.0, 0.01, 0.0]).view(1, 3, 1, 1)
        return logits


class BakedAdaptivePool(nn.Module):
    """nn.AdaptiveAvgPool2d: the dynamo exporter bakes the trace-size bins in."""

    size_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        logits = self.conv(x)
        pooled = F.adaptive_avg_pool2d(logits, 3)
        return logits + 5 * F.interpolate(pooled, size=logits.shape[-2:], mode="bilinear")


@pytest.mark.parametrize(
    ("network", "exporter"), [(ExportsDifferently, "legacy"), (BakedAdaptivePool, "dynamo")]
)
def test_broken_export_raises_and_writes_nothing(tmp_path, network, exporter):
    torch.manual_seed(0)
    model = network()
    path = tmp_path / "broken.onnx"
    with pytest.raises(ExportVerificationError, match="differ"):
        export_onnx(
            model,
            path,
            metadata_for(model),
            sample=torch.rand(1, 1, 48, 48),
            verify_shapes=[(2, 32, 64)],
            exporter=exporter,
        )
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_shapes_that_break_the_size_multiple(tmp_path):
    model = decisive("unet")
    with pytest.raises(ValueError, match="multiples of 8"):
        export_onnx(model, tmp_path / "m.onnx", metadata_for(model), verify_shapes=[(1, 12, 16)])
    with pytest.raises(ValueError, match="differ from the trace shape"):
        export_onnx(
            model,
            tmp_path / "m.onnx",
            metadata_for(model),
            sample=torch.rand(1, 1, 16, 16),
            verify_shapes=[(1, 16, 16)],
        )
    wrong = ModelMetadata(
        kind="insitu", class_names=CLASSES, arch="unet", paradigm="supervised", size_multiple=4
    )
    with pytest.raises(ValueError, match="size_multiple"):
        export_onnx(model, tmp_path / "m.onnx", wrong)
    assert list(tmp_path.iterdir()) == []


class IntensityClassifier(nn.Module):
    """Nearest-intensity classifier with class centres (1, -1, 0) in normalised intensity.

    Features relu(x), relu(-x) (so x = a - b) feed a 1x1 head with logits
    s * (2 c_k x - c_k^2): label boundaries at x = -0.5 and x = +0.5.
    """

    size_multiple = 1

    def __init__(self, sharpness: float = 20.0) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Conv2d(2, 3, 1)
        centres = torch.tensor([1.0, -1.0, 0.0])
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0, 1, 1] = 1.0
            self.features.weight[1, 0, 1, 1] = -1.0
            self.features.bias.zero_()
            weight = sharpness * 2 * centres[:, None] * torch.tensor([1.0, -1.0])
            self.head.weight.copy_(weight.view(3, 2, 1, 1))
            self.head.bias.copy_(-sharpness * centres**2)

    def forward(self, x):
        return self.head(torch.relu(self.features(x)))


def patch_images(rng, n, size=64):
    """Images of 8x8 patches at the class centres (1, -1, 0) plus small noise: no near-ties."""
    patches = rng.choice(np.array([1.0, -1.0, 0.0]), size=(n, size // 8, size // 8))
    images = np.kron(patches, np.ones((8, 8))) + rng.normal(0, 0.05, (n, size, size))
    return np.clip(images, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    model = IntensityClassifier()
    path = tmp_path_factory.mktemp("int8") / "classifier.onnx"
    export_onnx(model, path, metadata_for(model, "intensity"), exporter="legacy")
    return path


def test_int8_kept_when_labels_agree(classifier_path, tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "classifier-int8.onnx"
    report = quantize_int8(classifier_path, out, patch_images(rng, 8), min_agreement=0.999)
    assert report.kept and report.agreement >= 0.999 and report.path == out
    assert report.calibration_images == 6 and report.validation_images == 2
    proto = onnx.load(str(out))
    assert any(node.op_type == "QuantizeLinear" for node in proto.graph.node)
    # The classifier head stays float: its weight is a float initializer, not dequantised.
    producers = {o: n for n in proto.graph.node for o in n.output}
    argmax = next(n for n in proto.graph.node if n.op_type == "ArgMax")
    head = producers[argmax.input[0]]
    floats = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert head.op_type == "Conv" and head.input[1] in floats
    segmenter = Segmenter(out, providers=("cpu",), threads=1)
    assert segmenter.metadata.extra == {"quantized": "int8"}
    assert segmenter.metadata.arch == "intensity"
    # The INT8 model segments the patch images like the known classifier does.
    images = patch_images(rng, 2)
    truth = np.choose(np.rint(images).astype(int) + 1, [1, 2, 0]).astype(np.uint8)
    assert np.mean(segmenter.segment(images).labels == truth) > 0.999


def test_int8_rejected_below_the_agreement_threshold(classifier_path, tmp_path, caplog):
    rng = np.random.default_rng(0)
    calibration = patch_images(rng, 6)
    # Uniform intensities put ~0.3 % of the pixels within a quantisation step of x = +-0.5.
    held_out = rng.uniform(-1, 1, (2, 64, 64)).astype(np.float32)
    out = tmp_path / "classifier-int8.onnx"
    report = quantize_int8(classifier_path, out, calibration, validation_images=held_out)
    assert report.min_agreement == 0.999  # the default rule
    assert not report.kept and report.agreement < 0.999 and report.path is None
    assert 0.9 < report.agreement  # a few boundary pixels, not a broken model
    assert list(tmp_path.iterdir()) == []
    # The caller says it (`nwwatch train`: "int8 model not kept: ..."); a WARNING here reached
    # stderr through logging's last-resort handler as a second line saying the same.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("layout", ["images", "flat"])
def test_the_int8_snippet_of_the_models_doc_reads_either_data_layout(classifier_path,
                                                                     tmp_path, monkeypatch,
                                                                     layout):
    """docs/models.md's INT8 snippet globbed DATA/images/*.tif: on the flat layout that
    `nwwatch synth insitu` writes and `nwwatch train` reads it found no image ("need at
    least one array to stack")."""
    import re
    import shutil
    from pathlib import Path

    from training_helpers import make_folder

    doc = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    (snippet,) = re.findall(r"## INT8\n\n```python\n(.*?)```", doc, re.S)
    data = make_folder(tmp_path / "DATA", n=4)
    if layout == "flat":  # frames beside labels/, as `nwwatch synth insitu` writes them
        for path in (data / "images").iterdir():
            path.rename(data / path.name)
        (data / "images").rmdir()
    shutil.copy(classifier_path, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "docs/models.md", "exec"), namespace)  # noqa: S102 (the doc's text)
    assert namespace["calibration_images"].shape == (4, 48, 48)
    assert namespace["report"].calibration_images == 3
