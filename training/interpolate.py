"""Weight-space interpolation of two checkpoints of one architecture (WiSE-FT).

Interpolating the weights of an original model A and a fine-tuned copy B of it,
``(1 - alpha) * A + alpha * B``, keeps much of the fine-tuning gain while recovering A's
behaviour on data unlike the fine-tuning set (Wortsman et al. 2022, "Robust fine-tuning of
zero-shot models"). ``alpha = 0`` is A, ``alpha = 1`` is B, exactly.

    python -m training.interpolate A.pt B.pt --alpha 0.5 --out C.pt \\
        [--onnx C.onnx --metadata-from A.onnx]

``A.pt`` and ``B.pt`` are training checkpoints or slim ``--init`` weights
(:mod:`training.weights`); ``C.pt`` is written as slim weights. With ``--onnx`` the result is
exported and verified like a trained model (:func:`training.export.export_onnx`); its metadata
is that of ``--metadata-from`` (classes, normalisation, the working scale the runtime resizes
frames to) with the run-specific entries replaced by an ``interpolation`` entry naming both
weight files, their sha256 and alpha.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nwwatch import __version__
from nwwatch.filehash import file_sha256
from nwwatch.segment.contract import ModelMetadata
from nwwatch.segment.session import Segmenter
from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.paradigms.base import build_inference_model
from training.weights import seen_images

#: Metadata ``extra`` entries that describe one training run; an interpolation has none.
RUN_SPECIFIC_EXTRA = ("epochs", "seed", "crop", "crop_option", "training_source",
                      "labeled_images", "unlabeled_images", "provenance")


class InterpolationError(ValueError):
    """Checkpoints that cannot be interpolated; the message names the file and the key."""


def interpolate_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` of every floating-point tensor of two state dicts.

    Parameters
    ----------
    a, b : state dicts with the same keys, shapes and dtypes.
    alpha : weight of ``b`` in [0, 1]; 0 returns ``a``'s values and 1 ``b``'s, bit for bit.

    Integer tensors (BatchNorm's ``num_batches_tracked`` counters, unused at inference) cannot
    be interpolated; they are taken from the nearer end (``b`` when alpha >= 0.5).

    Raises InterpolationError naming the first key that is missing or differs in shape/dtype.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InterpolationError(f"alpha {alpha} is not in [0, 1]")
    only = sorted(set(a) ^ set(b))
    if only:
        raise InterpolationError(f"state key {only[0]!r} is in only one of the two checkpoints")
    out = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            raise InterpolationError(f"state key {key!r}: {tuple(ta.shape)} {ta.dtype} vs "
                                     f"{tuple(tb.shape)} {tb.dtype}")
        if ta.is_floating_point():
            out[key] = (1.0 - alpha) * ta + alpha * tb
        else:
            out[key] = (tb if alpha >= 0.5 else ta).clone()
    return out


def _check_same_model(a: dict[str, Any], b: dict[str, Any], a_path: Path, b_path: Path) -> None:
    spec_a, spec_b = a.get("inference"), b.get("inference")
    if not isinstance(spec_a, dict) or not isinstance(spec_b, dict):
        missing = a_path if not isinstance(spec_a, dict) else b_path
        raise InterpolationError(f"{missing}: no 'inference' model in the checkpoint")
    for key in sorted(set(spec_a) | set(spec_b)):
        if key == "config":
            continue
        if spec_a.get(key) != spec_b.get(key):
            raise InterpolationError(f"{a_path} and {b_path} differ in inference {key!r}: "
                                     f"{spec_a.get(key)!r} vs {spec_b.get(key)!r}")
    config_a, config_b = spec_a.get("config", {}), spec_b.get("config", {})
    # The architecture first: two architectures differ in options too.
    for key in sorted(set(config_a) | set(config_b), key=lambda k: (k != "arch", k)):
        if config_a.get(key) != config_b.get(key):
            raise InterpolationError(
                f"{a_path} and {b_path} are different architectures: model option {key!r} is "
                f"{config_a.get(key)!r} vs {config_b.get(key)!r}")
    if a.get("class_names") != b.get("class_names"):
        raise InterpolationError(f"{a_path} and {b_path} differ in 'class_names': "
                                 f"{a.get('class_names')} vs {b.get('class_names')}")


def interpolation_record(a: str | os.PathLike[str], b: str | os.PathLike[str],
                         alpha: float) -> dict[str, Any]:
    """What an interpolated model is: both weight files (path, sha256) and alpha."""
    return {"formula": "(1 - alpha) * a + alpha * b", "alpha": float(alpha),
            "a": {"path": str(a), "sha256": file_sha256(a)},
            "b": {"path": str(b), "sha256": file_sha256(b)}}


def interpolate_checkpoints(a: str | os.PathLike[str], b: str | os.PathLike[str], alpha: float,
                            out: str | os.PathLike[str]) -> Path:
    """Write slim weights (:mod:`training.weights`) ``(1 - alpha) * a + alpha * b`` to ``out``.

    Both files hold the same architecture (same ``inference`` spec, state keys, shapes and
    class names); otherwise InterpolationError names the differing key. The slim file's
    ``source`` and ``interpolation`` entries name both inputs and alpha.
    """
    a, b, out = Path(a), Path(b), Path(out)
    payload_a, payload_b = load_checkpoint(a), load_checkpoint(b)
    _check_same_model(payload_a, payload_b, a, b)
    try:
        state = interpolate_states(payload_a["inference_state"], payload_b["inference_state"],
                                   alpha)
    except InterpolationError as exc:
        raise InterpolationError(f"{a} and {b}: {exc}") from None
    record = interpolation_record(a, b, alpha)
    save_checkpoint(out, {
        "inference": payload_a["inference"], "inference_state": state,
        "class_names": payload_a.get("class_names"), "kind": payload_a.get("kind"),
        "source": f"weight-space interpolation (1 - {alpha:g}) * {a} + {alpha:g} * {b} "
                  f"(python -m training.interpolate)",
        "interpolation": record,
        # what either set of weights was trained on, the interpolation has seen
        "seen_images_sha256": sorted(seen_images(payload_a) | seen_images(payload_b))})
    return out


def interpolated_metadata(base: ModelMetadata, record: dict[str, Any],
                          command: str) -> ModelMetadata:
    """``base`` (the metadata of the model whose classes, normalisation and working scale the
    result keeps) with the run-specific entries replaced by the interpolation ``record``.

    The interpolated weights were validated on no training split, so ``validation_metrics``
    is empty and ``training_data_sha256`` blank (the inputs' files are named instead).
    """
    extra = {k: v for k, v in base.extra.items() if k not in RUN_SPECIFIC_EXTRA}
    extra["interpolation"] = record
    return replace(base, nwwatch_version=__version__, training_data_sha256="",
                   training_command=command, validation_metrics={}, extra=extra)


def export_interpolated(weights: str | os.PathLike[str], onnx_out: str | os.PathLike[str],
                        metadata_from: str | os.PathLike[str], command: str,
                        exporter: str = "dynamo") -> Any:
    """Export slim weights written by :func:`interpolate_checkpoints` to a verified ONNX file
    whose metadata is :func:`interpolated_metadata` of ``metadata_from``'s. Returns the
    :class:`training.export.ExportReport`."""
    from training.export import export_onnx
    from training.exportnoise import known_noise_filtered

    payload = load_checkpoint(weights)
    record = payload.get("interpolation")
    if record is None:
        raise CheckpointError(f"{weights}: not written by training.interpolate "
                              f"(no 'interpolation' entry)")
    base = Segmenter(metadata_from, providers=("cpu",), threads=1).metadata
    if list(base.class_names) != list(payload.get("class_names") or base.class_names):
        raise InterpolationError(f"{metadata_from}: classes {list(base.class_names)} differ "
                                 f"from {weights}'s {payload.get('class_names')}")
    model = build_inference_model(payload["inference"])
    model.load_state_dict(payload["inference_state"])
    # the metadata describes the network: another architecture's (its options, its size
    # multiple) would be written beside these weights, and the export verified all the same
    built = dict(getattr(model, "config", {}) or {})
    described = base.extra.get("model_config")
    arch = getattr(model, "arch", base.arch)
    if base.arch != arch or (described is not None and json.loads(json.dumps(described))
                             != json.loads(json.dumps(built))):
        raise InterpolationError(
            f"{metadata_from}: its network ({base.arch} {described}) is not the one of "
            f"{weights} ({arch} {built}): take the metadata from a model of the same "
            f"architecture and options (one of the interpolated runs' exports)")
    metadata = interpolated_metadata(base, record, command)
    with known_noise_filtered():  # the exporter output `nwwatch train` drops too
        return export_onnx(model.eval(), onnx_out, metadata, exporter=exporter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.interpolate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="weights at alpha = 0 (checkpoint or slim .pt)")
    parser.add_argument("b", type=Path, help="weights at alpha = 1, same architecture")
    parser.add_argument("--alpha", type=float, required=True, help="weight of B, in [0, 1]")
    parser.add_argument("--out", type=Path, required=True, help="interpolated slim weights .pt")
    parser.add_argument("--onnx", type=Path, help="also export them to this ONNX file")
    parser.add_argument("--metadata-from", type=Path,
                        help="ONNX model whose metadata (classes, working scale) --onnx keeps")
    parser.add_argument("--exporter", default="dynamo", choices=("dynamo", "legacy"))
    args = parser.parse_args(argv)
    if args.onnx is not None and args.metadata_from is None:
        parser.error("--onnx needs --metadata-from (the model whose working scale to keep)")
    if args.out.resolve() in (args.a.resolve(), args.b.resolve()):
        parser.error(f"--out {args.out} is one of the weights interpolated; write another file")
    if args.onnx is not None and args.onnx.resolve() == args.metadata_from.resolve():
        parser.error(f"--onnx {args.onnx} is the --metadata-from model; write another file")
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "training.interpolate", *argv])
    try:
        out = interpolate_checkpoints(args.a, args.b, args.alpha, args.out)
        print(f"wrote {out}")
        if args.onnx is not None:
            report = export_interpolated(out, args.onnx, args.metadata_from, command,
                                         exporter=args.exporter)
            print(f"wrote {report.path} (sha256 {report.sha256}, max |p - p_torch| "
                  f"{report.max_abs_diff:.2e})")
    except (InterpolationError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
