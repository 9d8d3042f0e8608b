"""What an nwwatch ONNX model looks like: the contract between ``training`` and the runtime.

Graph
-----
- input ``image``: float32 (N, 1, H, W), produced by :func:`nwwatch.normalize.normalize_image`;
  N, H and W are dynamic. H and W must be multiples of ``ModelMetadata.size_multiple``; the
  runtime pads (reflect) and crops.
- output ``labels``: uint8 (N, H, W), the argmax class id per pixel.
- output ``probabilities``: float32 (N, C, H, W), softmax over the C classes.

Metadata
--------
``model.metadata_props`` holds one key, ``nwwatch``, whose value is the JSON of
:class:`ModelMetadata`. Read it back with :func:`read_metadata` of
``session.get_modelmeta().custom_metadata_map`` (ONNX Runtime) or of the ``metadata_props``
of an ``onnx`` model (training).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nwwatch.normalize import NORMALIZATION

INPUT_NAME = "image"
OUTPUT_LABELS = "labels"
OUTPUT_PROBABILITIES = "probabilities"
METADATA_KEY = "nwwatch"
#: Bumped when the graph or metadata contract changes incompatibly.
CONTRACT_VERSION = 1
OPSET = 18

KINDS = ("insitu", "tomogram")
NORMALIZATION_SCOPES = ("image", "volume")


class ModelMetadataError(ValueError):
    """A model's nwwatch metadata is missing or invalid; the message names the key."""


#: (field, accepted types, what the metadata must hold) of :class:`ModelMetadata`, checked
#: when it is read: a value of another type (``"size_multiple": "16"``) failed later as a
#: traceback, or (16.0) on every frame.
_FIELD_TYPES = (
    ("kind", str, "a string"), ("class_names", tuple, "a list of class names"),
    ("arch", str, "a string"), ("paradigm", str, "a string"),
    ("size_multiple", int, "an integer"), ("normalization", str, "a string"),
    ("normalization_scope", str, "a string"), ("contract_version", int, "an integer"),
    ("nwwatch_version", str, "a string"), ("training_data_sha256", str, "a string"),
    ("training_command", str, "a string"),
    ("validation_metrics", dict, "an object of metric names and numbers"),
    ("extra", dict, "an object"),
)


@dataclass(frozen=True)
class ModelMetadata:
    """Facts a runtime needs about a model, stored inside the ONNX file.

    ``normalization_scope`` is ``"image"`` when each frame is normalised on its own and
    ``"volume"`` when a tomogram is normalised with the intensity range of the whole volume.
    """

    kind: str
    class_names: tuple[str, ...]
    arch: str
    paradigm: str
    size_multiple: int
    normalization: str = NORMALIZATION
    normalization_scope: str = "image"
    contract_version: int = CONTRACT_VERSION
    nwwatch_version: str = ""
    training_data_sha256: str = ""
    training_command: str = ""
    validation_metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, kinds, what in _FIELD_TYPES:
            value = getattr(self, key)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise ModelMetadataError(f"{key}: {value!r} is not {what}")
        if not all(isinstance(name, str) and name for name in self.class_names):
            raise ModelMetadataError(f"class_names: {list(self.class_names)!r} is not a list of "
                                     f"names (non-empty strings)")
        if self.kind not in KINDS:
            raise ModelMetadataError(f"kind: {self.kind!r} is not one of {KINDS}")
        if len(self.class_names) < 2:
            raise ModelMetadataError("class_names: a model needs at least two classes")
        if self.size_multiple < 1:
            raise ModelMetadataError(f"size_multiple: {self.size_multiple} must be >= 1")
        if self.normalization_scope not in NORMALIZATION_SCOPES:
            raise ModelMetadataError(
                f"normalization_scope: {self.normalization_scope!r} is not one of "
                f"{NORMALIZATION_SCOPES}"
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelMetadataError(f"{METADATA_KEY}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ModelMetadataError(f"{METADATA_KEY}: expected a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelMetadataError(f"{METADATA_KEY}: unknown keys {unknown}")
        for key in ("kind", "class_names", "arch", "paradigm", "size_multiple"):
            if key not in raw:
                raise ModelMetadataError(f"{METADATA_KEY}: missing key {key!r}")
        if not isinstance(raw["class_names"], list):  # a string would be read letter by letter
            raise ModelMetadataError(f"class_names: {raw['class_names']!r} is not a list of "
                                     f"class names")
        raw["class_names"] = tuple(raw["class_names"])
        if raw.get("contract_version", CONTRACT_VERSION) != CONTRACT_VERSION:
            raise ModelMetadataError(
                f"contract_version: model has {raw['contract_version']!r}, this nwwatch reads "
                f"{CONTRACT_VERSION}; re-export the model with this version"
            )
        if raw.get("normalization", NORMALIZATION) != NORMALIZATION:
            raise ModelMetadataError(
                f"normalization: model was trained with {raw['normalization']!r}, this nwwatch "
                f"normalises with {NORMALIZATION!r}"
            )
        metrics = raw.get("validation_metrics", {})
        if isinstance(metrics, dict) and not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()):
            raise ModelMetadataError(f"validation_metrics: {metrics!r} holds a value that is "
                                     f"not a number")
        return cls(**raw)


#: How a wrapper (docs/models.md, "A model trained elsewhere") fixes a tensor of another type.
_TYPE_FIX = {
    (INPUT_NAME, "tensor(float16)"): ": take float32 and convert inside the wrapper "
                                     "(self.net(image.half()).float())",
    (INPUT_NAME, "tensor(double)"): ": take float32 and convert inside the wrapper "
                                    "(image.double())",
    (OUTPUT_LABELS, "tensor(int64)"): ": the argmax .to(torch.uint8) in the wrapper",
    (OUTPUT_LABELS, "tensor(int32)"): ": the argmax .to(torch.uint8) in the wrapper",
    (OUTPUT_PROBABILITIES, "tensor(float16)"): ": .float() on the softmax in the wrapper",
}
#: What the graph's tensors must be (module docstring): (ONNX Runtime's type, rank).
_TENSORS = {INPUT_NAME: ("tensor(float)", 4), OUTPUT_LABELS: ("tensor(uint8)", 3),
            OUTPUT_PROBABILITIES: ("tensor(float)", 4)}


def graph_problem(tensors: Mapping[str, tuple[str, list]], metadata: ModelMetadata
                  ) -> str | None:
    """Why a graph breaks the contract, or None: ``tensors`` maps the input's and outputs'
    names to (ONNX Runtime type, shape; a dimension an int when fixed, a name when not).
    Checked when a model loads: a model whose every frame fails alike (3 input channels, 2
    probabilities for 3 classes, labels as int64) is refused then, not quarantining the
    files one by one. The input has one channel (a slab model's slices come along N); the
    probabilities one per class of ``class_names``."""
    channels = {INPUT_NAME: 1, OUTPUT_PROBABILITIES: len(metadata.class_names)}
    for name, (dtype, rank) in _TENSORS.items():
        if name not in tensors:
            continue  # a missing name is said by the caller
        got_type, shape = tensors[name]
        if got_type != dtype:
            return f"{name!r} is {got_type}, not {dtype}{_TYPE_FIX.get((name, got_type), '')}"
        if shape and len(shape) != rank:
            return f"{name!r} has {len(shape)} dimensions {list(shape)}, not {rank}"
        want = channels.get(name)
        last = {want, 3} if name == INPUT_NAME else {want}
        if shape and want is not None and shape[-1] in last and shape[1] != shape[-1] \
                and (not isinstance(shape[1], int) or shape[1] > max(last)):
            # (N, H, W, C): read as W = C fixed, and "make W dynamic" changed nothing
            turn = ("probabilities.permute(0, 3, 1, 2) last in forward"
                    if name != INPUT_NAME else "image.permute(0, 2, 3, 1) first in forward"
                    if shape[-1] == 1 else
                    "image.permute(0, 2, 3, 1).expand(-1, -1, -1, 3) first in forward")
            return (f"{name!r} is {list(shape)}, channels last: the contract's tensors are "
                    f"channels first (N, C, H, W); turn it inside the wrapper ({turn})")
        if shape and want is not None and isinstance(shape[1], int) and shape[1] != want:
            what = ("the classes of its metadata's class_names" if name == OUTPUT_PROBABILITIES
                    else "a grey frame, normalised")
            fix = ("; a network of 3 input channels gets image.expand(-1, 3, -1, -1) in the "
                   "wrapper" if name == INPUT_NAME and shape[1] == 3 else "")
            return f"{name!r} has {shape[1]} channels, not {want} ({what}){fix}"
    image = tensors.get(INPUT_NAME, ("", []))[1]
    fixed = [f"{axis} = {image[i]}" for i, axis in ((0, "N"), (2, "H"), (3, "W"))
             if len(image) == 4 and isinstance(image[i], int)]
    if fixed:  # every frame of another size, or a batch, failed in ONNX Runtime
        return (f"{INPUT_NAME!r} is {list(image)}, with {', '.join(fixed)} fixed: nwwatch feeds "
                f"batches of frames of any size (N, 1, H, W), so N, H and W must be dynamic "
                f"(torch.onnx.export(..., dynamic_axes={{'image': {{0: 'N', 2: 'H', 3: 'W'}}, "
                f"'labels': {{0: 'N', 1: 'H', 2: 'W'}}, 'probabilities': {{0: 'N', 2: 'H', "
                f"3: 'W'}}}}); a channels-last input (N, H, W, 1) is not read")
    return None


def read_metadata(props: Mapping[str, str] | Iterable[Any],
                  path: str | os.PathLike[str]) -> ModelMetadata:
    """The :class:`ModelMetadata` of the model file ``path`` from its metadata properties:
    ONNX Runtime's ``custom_metadata_map`` or an ``onnx`` model's ``metadata_props`` (entries
    with ``key`` and ``value``). Raises :class:`ModelMetadataError` naming ``path`` (and the
    key) when there is no nwwatch metadata or it is not valid."""
    if not isinstance(props, Mapping):
        props = {prop.key: prop.value for prop in props}
    if METADATA_KEY not in props:
        has = f"its metadata keys: {sorted(props)}" if props else "it has no metadata"
        raise ModelMetadataError(
            f"{path}: no {METADATA_KEY!r} metadata in the model ({has}); a model trained "
            f"elsewhere gets it as docs/models.md, 'A model trained elsewhere', shows: "
            f"model.metadata_props.add(key={METADATA_KEY!r}, value=ModelMetadata(kind=..., "
            f"class_names=..., arch=..., paradigm=..., size_multiple=...).to_json()) with "
            f"the onnx package, then onnx.save")
    try:
        return ModelMetadata.from_json(props[METADATA_KEY])
    except ModelMetadataError as exc:
        raise ModelMetadataError(f"{path}: {exc}") from None
