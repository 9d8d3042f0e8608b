"""Tiny but real ONNX models that follow the nwwatch model contract, built with ``onnx`` only.

The graph is a nearest-intensity classifier: class ``k`` has a centre ``c_k`` in normalised
intensity (``normalize_image`` output, [-1, 1]) and a pixel gets the class whose centre is
nearest. ``-s (x - c_k)^2 = -s x^2 + 2 s c_k x - s c_k^2``; the ``-s x^2`` term is shared by
all classes, so softmax and argmax only need the linear part: a 1x1 ``Conv`` with weight
``2 s c_k`` and bias ``-s c_k^2``. An optional 3x3 box filter in front makes it a spatial
convolution (and lets ``size_multiple`` padding matter). Tests can therefore paint an image
with known class intensities and know the exact labels the model must return.

Usage::

    from onnx_models import build_threshold_model  # pytest puts tests/ on sys.path
    path = build_threshold_model(tmp_path / "m.onnx", kind="insitu")
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nwwatch.segment.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OPSET,
    OUTPUT_LABELS,
    OUTPUT_PROBABILITIES,
    ModelMetadata,
)

#: Class centres in normalised intensity. In-situ bright field: the wire is darkest, the
#: droplet mid-grey, the background bright. Tomograms: pore dark, solid bright.
INSITU_CENTRES = (1.0, -1.0, 0.0)  # background, nanowire, droplet
TOMOGRAM_CENTRES = (-1.0, 1.0)  # pore, solid
#: Raw uint8 grey values that normalise (percentile 0.5-99.5 of an image containing all
#: three) onto the in-situ centres above.
INSITU_GREY = {0: 200, 1: 40, 2: 120}
TOMOGRAM_GREY = {0: 30, 1: 220}


def build_threshold_model(
    path: str | os.PathLike[str],
    *,
    kind: str = "insitu",
    centres: tuple[float, ...] | None = None,
    sharpness: float = 8.0,
    smooth: bool = False,
    kernel: np.ndarray | None = None,
    size_multiple: int = 1,
    metadata: dict | None = None,
    with_metadata: bool = True,
    reflect_pad_px: int = 0,
    class_names: tuple[str, ...] | None = None,
) -> Path:
    """Write a contract-following ONNX model to ``path`` and return the path.

    Parameters
    ----------
    kind : "insitu" (classes background, nanowire, droplet) or "tomogram" (pore, solid).
    centres : class centres in normalised intensity; defaults per kind.
    sharpness : ``s`` above (softmax temperature).
    smooth : put a 3x3 box filter (zero padded) before the classifier.
    kernel : a 3x3 filter to use instead of the box (implies ``smooth``), e.g. a one-pixel
        shift, which gives the model a direction bias.
    size_multiple : written into the metadata (the runtime pads to it).
    metadata : extra ``ModelMetadata`` fields to override.
    with_metadata : False writes a model without nwwatch metadata (to test refusal).
    reflect_pad_px : r > 0 mirrors the input by r px on every side and crops it back (no
        effect on the output), so, like a wide blur's reflect pad, the graph fails in ONNX
        Runtime on images with a side of r px or less.
    class_names : other classes than the kind's (give as many ``centres``).
    """
    if kind == "insitu":
        names: tuple[str, ...] = ("background", "nanowire", "droplet")
        centres = centres or INSITU_CENTRES
    elif kind == "tomogram":
        names = ("pore", "solid")
        centres = centres or TOMOGRAM_CENTRES
    else:
        raise ValueError(f"kind must be 'insitu' or 'tomogram', got {kind!r}")
    names = class_names or names
    n_classes = len(names)
    c = np.asarray(centres, dtype=np.float32)
    weight = (2.0 * sharpness * c).reshape(n_classes, 1, 1, 1).astype(np.float32)
    bias = (-sharpness * c**2).astype(np.float32)

    nodes = []
    inits = [numpy_helper.from_array(weight, "cls_w"), numpy_helper.from_array(bias, "cls_b")]
    feature = INPUT_NAME
    if reflect_pad_px > 0:
        r = int(reflect_pad_px)
        inits += [numpy_helper.from_array(np.array([0, 0, r, r, 0, 0, r, r], np.int64), "rp"),
                  numpy_helper.from_array(np.array([r, r], np.int64), "rp_start"),
                  numpy_helper.from_array(np.array([-r, -r], np.int64), "rp_end"),
                  numpy_helper.from_array(np.array([2, 3], np.int64), "rp_axes")]
        nodes += [helper.make_node("Pad", [INPUT_NAME, "rp"], ["mirrored"], mode="reflect"),
                  helper.make_node("Slice", ["mirrored", "rp_start", "rp_end", "rp_axes"],
                                   ["cropped"])]
        feature = "cropped"
    if smooth or kernel is not None:
        box = (np.full((1, 1, 3, 3), 1.0 / 9.0, dtype=np.float32) if kernel is None
               else np.asarray(kernel, dtype=np.float32).reshape(1, 1, 3, 3))
        inits.append(numpy_helper.from_array(box, "box_w"))
        nodes.append(
            helper.make_node("Conv", [feature, "box_w"], ["smoothed"], pads=[1, 1, 1, 1])
        )
        feature = "smoothed"
    nodes += [
        helper.make_node("Conv", [feature, "cls_w", "cls_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_PROBABILITIES], axis=1),
        helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0),
        helper.make_node("Cast", ["argmax"], [OUTPUT_LABELS], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        f"nwwatch-test-{kind}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [
            helper.make_tensor_value_info(OUTPUT_LABELS, TensorProto.UINT8, ["N", "H", "W"]),
            helper.make_tensor_value_info(
                OUTPUT_PROBABILITIES, TensorProto.FLOAT, ["N", n_classes, "H", "W"]
            ),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10  # readable by onnxruntime 1.31
    model.model_version = 1
    if with_metadata:
        fields = dict(
            kind=kind,
            class_names=names,
            arch="threshold-test",
            paradigm="none",
            size_multiple=size_multiple,
            normalization_scope="volume" if kind == "tomogram" else "image",
            extra={"centres": [float(v) for v in c], "sharpness": sharpness, "smooth": smooth},
        )
        fields.update(metadata or {})
        meta = ModelMetadata(**fields)
        helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def expected_labels(raw: np.ndarray, kind: str = "insitu") -> np.ndarray:
    """Labels the unsmoothed threshold model must return for an image painted with the
    ``*_GREY`` values (exact: every painted value sits on a class centre)."""
    grey = INSITU_GREY if kind == "insitu" else TOMOGRAM_GREY
    out = np.full(raw.shape, 255, dtype=np.uint8)
    for label, value in grey.items():
        out[raw == value] = label
    if (out == 255).any():
        raise ValueError("image has values other than the painted class greys")
    return out


__all__ = [
    "INSITU_CENTRES",
    "INSITU_GREY",
    "TOMOGRAM_CENTRES",
    "TOMOGRAM_GREY",
    "build_threshold_model",
    "expected_labels",
]

if __name__ == "__main__":  # pragma: no cover - manual check
    import sys

    print(json.dumps(str(build_threshold_model(sys.argv[1]))))
