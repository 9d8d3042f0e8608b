"""``nwwatch model``: what a model file is, and whether the service would load it.

Everything shown is read the way the runtime reads it: the model is loaded by
:class:`nwwatch.segment.session.Segmenter` (the model contract: metadata, input and outputs,
working scale) and judged by :func:`nwwatch.service.engines.model_problem`, the check the
service makes when it loads a model. The evaluations on held-out folders come from the model's card
(``MODEL.json`` beside it, written by ``python -m training.model_card``), shown only when the
card's sha256 is the file's. Needs no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from nwwatch.options import listed, model_file
from nwwatch.segment.scale import METADATA_KEY, WorkingScale

#: What the service does with a model of each kind.
_USE = {"insitu": "an in-situ model (frames: segmentation and contact angles)",
        "tomogram": "a tomogram model (3D masks and volume metrics)"}


def _card(model: Path, sha256: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the card beside ``model`` when it describes this very file, a note when there is a
    card that does not or cannot be read)."""
    path = model.with_suffix(".json")
    if not path.is_file():
        return None, None
    # `nwwatch model M.onnx --json > M.json` puts the output where the card belongs: the shell
    # creates the file empty before this runs, and the output then names the model's sha256.
    elsewhere = (f"save `nwwatch model --json`'s output under another name than "
                 f"{path.name}, where the model's card belongs (`python -m training.model_card`)")
    try:
        text = path.read_text(encoding="utf-8")
        card = json.loads(text) if text.strip() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path}: not a model card ({exc}); its evaluations are not shown"
    if card is None:
        return None, (f"{path}: empty, not a model card (a shell redirection such as "
                      f"`> {path.name}` creates the file before the output is written: "
                      f"{elsewhere})")
    if isinstance(card, dict) and {"service", "card_note"} <= card.keys():
        return None, (f"{path}: the output of `nwwatch model --json`, not a model card "
                      f"(its evaluations are not shown: {elsewhere})")
    if not isinstance(card, dict) or "sha256" not in card:
        return None, f"{path}: not a model card (no sha256); its evaluations are not shown"
    if card["sha256"] != sha256:
        return None, (f"{path}: the card of another file (sha256 {str(card['sha256'])[:16]}…); "
                      f"its evaluations are not shown")
    return card, None


def describe_model(path: Path) -> tuple[dict[str, Any], str | None]:
    """(the description of the ONNX model ``path``, why the service would refuse it or None).

    Raises :class:`nwwatch.segment.session.ModelLoadError` naming the file when the runtime
    cannot load it at all (not ONNX, no nwwatch metadata, another contract version)."""
    from nwwatch.segment.session import Segmenter
    from nwwatch.service.engines import model_problem

    segmenter = Segmenter(path, providers=("cpu",), threads=1)
    meta = segmenter.metadata
    problem = model_problem(segmenter)
    card, card_note = _card(path, segmenter.model_sha256)
    extra = meta.extra
    info: dict[str, Any] = {
        "file": str(path),
        "sha256": segmenter.model_sha256,
        "size_bytes": path.stat().st_size,
        "kind": meta.kind,
        "class_names": list(meta.class_names),
        "arch": meta.arch,
        "architecture": extra.get("model_config"),
        "paradigm": meta.paradigm,
        "normalization": meta.normalization,
        "normalization_scope": meta.normalization_scope,
        "size_multiple": meta.size_multiple,
        "working_scale": segmenter.working_scale.to_dict(),
        "contract_version": meta.contract_version,
        "nwwatch_version": meta.nwwatch_version,
        "training_command": meta.training_command,
        "training_data_sha256": meta.training_data_sha256,
        "training_data": {
            "source": extra.get("training_source"),
            "labeled_images": extra.get("labeled_images"),
            "unlabeled_images": extra.get("unlabeled_images"),
            "description": card.get("training_data") if card else None,
        },
        "validation_metrics": meta.validation_metrics,
        "extra": extra,
        "onnx": segmenter.graph_signature(),
        "card": str(path.with_suffix(".json")) if card else None,
        "card_note": card_note,
        "fresh_synthetic_evaluations": card.get("fresh_synthetic_evaluations", [])
        if card else [],
        "service": {"loads": problem is None, "as": meta.kind, "problem": problem},
    }
    from nwwatch.evaluate import strict_json

    return strict_json(info), problem


def _shape(shape: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _scale(info: dict[str, Any]) -> WorkingScale:
    """The model's working scale from its description (``working_scale`` as ``to_dict``)."""
    return WorkingScale.from_metadata(info["kind"], {METADATA_KEY: info["working_scale"]})


#: What an evaluation's angles were scored against, by its ``angle_reference``
#: (:attr:`nwwatch.evaluate.EvaluationReport.angle_reference`).
_ANGLE_REFERENCE = {
    "geometry": "human angles (nwwatch label's geometry/)",
    "truth.parquet": "truth.parquet's angles (nwwatch synth's exact ones, or a table of yours)",
    "geometry and truth.parquet": "human angles (nwwatch label's geometry/) and truth.parquet's",
}


def _evaluation_line(report: dict[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    line = f"{report.get('images', '?')} images"
    if metrics.get("mean_iou") is not None:
        line += f", mIoU {100 * metrics['mean_iou']:.1f} %"
    angles = report.get("contact_angle")
    if angles:
        line += f", angles {angles.get('valid')}/{angles.get('frames')} valid"
        # what the angles were scored against: human angles are no exact synthetic truth
        against = _ANGLE_REFERENCE.get(report.get("angle_reference") or "")
        if against:
            line += f" against {against}"
        if angles.get("rmse_deg") is not None:
            line += (f" (RMSE {angles['rmse_deg']:.2f} deg, bias {angles['bias_deg']:+.2f} deg, "
                     f"max {angles['max_abs_deg']:.2f} deg)")
    offset = report.get("interface_offset")
    if offset and offset.get("bias_px") is not None:
        line += f", interface offset {offset['bias_px']:+.2f} px"
    if angles:  # (a card written before the version was recorded: an older measurement's)
        line += f" (measurement {report.get('measurement_version') or 'not recorded'})"
    seen = report.get("seen_by_model") or []
    if seen:  # a card written by hand or by an older tool: not held-out scores
        line += (f" (NOT held out: {len(seen)} of these images are the model's own, "
                 f"e.g. {seen[0]})")
    # a card's description of the folder, with the folder scored beside it where recorded
    # (older cards hold the description alone under "data")
    description, data = report.get("description"), report.get("data")
    said = f"{description} ({data})" if description and data else description or data
    return f"{line}: {said}" if said else line


def _score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "not scored"


def _selection_lines(extra: dict[str, Any]) -> list[str]:
    """How ``nwwatch train --volume`` chose a tomogram model's method (``extra["selection"]``)
    and the verdict codes the model alone gives every mask: the held-out scores and the
    reason are what tell such models apart, and the training log is rarely at hand."""
    from nwwatch.volume.verdict import assess_mask

    selection = extra.get("selection")
    counts = extra.get("class_pixel_counts")
    lines = []
    if isinstance(selection, dict) and selection.get("method"):
        lines.append(f"method selection: {selection['method']} kept "
                     f"({selection.get('reason') or 'no reason recorded'})")
        scores = selection.get("scores") if isinstance(selection.get("scores"), dict) else {}
        stopped = selection.get("stopped") if isinstance(selection.get("stopped"), dict) else {}
        if selection.get("grouping") == "none":
            lines.append("  held-out balanced accuracy: none (no labeled patch could be held "
                         "out)")
        elif scores:
            def rank(item: tuple[str, Any]) -> float:  # best first, stopped ones last
                return -item[1] if isinstance(item[1], (int, float)) else 1.0

            shown = [f"{name} {_score(value)}" if name not in stopped else
                     f"{name} stopped at most {_score(stopped[name])}"
                     for name, value in sorted(scores.items(), key=rank)]
            lines.append(f"  held-out balanced accuracy ({selection.get('folds', '?')} folds): "
                         + ", ".join(shown))
        lines += [f"  warning: {w}" for w in selection.get("warnings") or []
                  if isinstance(w, str)]
    if isinstance(counts, dict) and counts:
        lines.append("labeled pixels: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    try:
        # No volume: only the codes that come from the model itself are given.
        verdict = assess_mask(float("nan"), 0.0, float("nan"), float("nan"), float("nan"),
                              counts if isinstance(counts, dict) else None,
                              selection if isinstance(selection, dict) else None)
    except (TypeError, ValueError):  # a malformed record is the service's to refuse
        return lines
    if verdict.reason_codes:
        lines.append(f"every mask of this model is suspect "
                     f"({', '.join(verdict.reason_codes)}): " + "; ".join(verdict.why))
    return lines


def _no_voxel_size_why(extra: dict[str, Any]) -> str:
    """Why a tomogram model recorded no training voxel size: its volume declared none, or it
    was trained on a DATA folder (``extra["voxel_size_source"]``; for models without that
    key, ``extra["training_source"]``: ``nwwatch train --volume`` writes ``PATH#z=...``)."""
    from nwwatch.volume.verdict import VOXEL_SIZE_SOURCE_KEY

    source = extra.get(VOXEL_SIZE_SOURCE_KEY)
    if source not in ("volume", "data_folder"):
        trained_on = extra.get("training_source")
        source = (None if not isinstance(trained_on, str)
                  else "volume" if "#z=" in trained_on else "data_folder")
    if source == "volume":
        return "the training volume declared none"
    if source == "data_folder":
        return "trained on a DATA folder, whose labeled slices are 2-D images"
    return "the training volume declared none, or the model was trained on a DATA folder"


def _voxel_size_line(extra: dict[str, Any]) -> list[str]:
    """The training volume's voxel size a tomogram model recorded (``extra["voxel_size_nm"]``),
    against which the service checks every volume's (``voxel_size_mismatch``)."""
    from nwwatch.volume.verdict import (
        VOXEL_SIZE_FACTOR,
        VOXEL_SIZE_KEY,
        sizes_text,
        trained_voxel_size,
    )

    if VOXEL_SIZE_KEY not in extra:
        return ["training voxel size: not recorded (volumes are not checked against it)"]
    try:
        sizes = trained_voxel_size(extra)
    except ValueError as exc:  # the service's to refuse; said here as it is
        return [f"training voxel size: {exc}"]
    if sizes is None:
        return [f"training voxel size: unknown ({_no_voxel_size_why(extra)}; volumes are not "
                f"checked against it)"]
    unknown = [axis for axis, v in zip("zyx", sizes, strict=True) if v is None]
    not_declared = (f"; {' and '.join(unknown)} not declared by the training volume, not "
                    f"compared" if unknown else "")
    return [f"training voxel size: {sizes_text(sizes)} nm (z x y x x{not_declared}); a "
            f"volume more than {VOXEL_SIZE_FACTOR:g} x apart on an axis both declare is suspect "
            "(voxel_size_mismatch)"]


def _metrics_text(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in sorted(metrics.items()))


def _start_metrics_line(extra: dict[str, Any]) -> list[str]:
    """The line with the score of the weights a fine-tune started from (``--init``), on the
    images that scored its epochs, before training (``extra.start_metrics``): beside the
    exported weights' metrics, a fine-tune that made the model worse shows it."""
    start = extra.get("start_metrics")
    if not isinstance(start, dict) or not start:
        return []
    return [f"starting weights (--init, before training, on the same images): "
            f"{_metrics_text(start)}"]


def _started_from(extra: dict[str, Any]) -> list[str]:
    """The line naming the weights a fine-tune started from (``extra.provenance.init``) and
    the model they are, by the sha256 its rows carry; none for a model trained from scratch
    or one whose record is not a dict."""
    provenance = extra.get("provenance") if isinstance(extra, dict) else None
    init = provenance.get("init") if isinstance(provenance, dict) else None
    if not isinstance(init, dict) or not isinstance(init.get("weights"), str):
        return []
    line = f"started from: {init['weights']}"
    if isinstance(init.get("sha256"), str):
        line += f" (sha256 {init['sha256'][:12]})"
    if isinstance(init.get("model"), str) and isinstance(init.get("model_sha256"), str):
        line += (f", the weights of {Path(init['model']).name} (model_sha256 "
                 f"{init['model_sha256'][:12]}, as in its rows)")
    return [line]


def format_model(info: dict[str, Any]) -> str:
    """The text ``nwwatch model`` prints for ``info`` (:func:`describe_model`)."""
    classes = ", ".join(f"{i} {name}" for i, name in enumerate(info["class_names"]))
    data = info["training_data"]
    source = data["source"] or "not recorded in the model"
    counts = [f"{data[k]} {k.split('_')[0]}" for k in ("labeled_images", "unlabeled_images")
              if data[k] is not None]
    if counts:
        source += f" ({', '.join(counts)} images)"
    architecture = info["arch"]
    if info["architecture"]:
        options = {k: v for k, v in info["architecture"].items() if k != "arch"}
        architecture += " " + json.dumps(options, sort_keys=True)
    lines = [
        f"model: {info['file']}",
        f"sha256: {info['sha256']} (the model_sha256 of the rows it makes; "
        f"{info['size_bytes']} bytes)",
        f"kind: {info['kind']}",
        f"classes: {classes}",
        f"architecture: {architecture}",
        f"paradigm: {info['paradigm']}",
        f"normalisation: {info['normalization']}, per {info['normalization_scope']}",
        f"working scale: {_scale(info).describe()}",
        f"size multiple: {info['size_multiple']} (frames padded to it)",
        f"training command: {info['training_command'] or 'not recorded'}",
        *_started_from(info["extra"]),
        f"training data: {source}",
        f"training data sha256: {info['training_data_sha256'] or 'not recorded'}",
    ]
    if data["description"]:
        lines.append(f"training data (card): {data['description']}")
    if info["validation_metrics"]:
        shown = _metrics_text(info["validation_metrics"])
        # with no image held out, the run's metrics are its training images' (train_*)
        on_training = all(str(k).startswith("train_") for k in info["validation_metrics"])
        lines.append(f"{'training' if on_training else 'validation'} metrics: {shown}")
        extra = info["extra"] or {}
        if isinstance(extra.get("exported_epoch"), int):
            held = [str(stem) for stem in extra.get("validation_images") or []]
            on = (f"held out: {listed(held)}" if held
                  else "no held-out images: scored on the training images")
            lines.append(f"exported weights: epoch {extra['exported_epoch']} of "
                         f"{extra.get('epochs', '?')} ({on}; keep these out of an evaluation)")
    lines += _start_metrics_line(info["extra"] or {})
    if info["kind"] == "tomogram":
        lines += _voxel_size_line(info["extra"] or {})
        lines += _selection_lines(info["extra"] or {})
    lines.append(f"nwwatch version: {info['nwwatch_version'] or 'not recorded'}; "
                 f"contract version {info['contract_version']}")
    for direction in ("inputs", "outputs"):
        for tensor in info["onnx"][direction]:
            lines.append(f"ONNX {direction[:-1]}: {tensor['name']} {tensor['type']} "
                         f"{_shape(tensor['shape'])}")
    # the card's key holds human-labelled folders' evaluations too: each line says its own
    # angle reference
    if info["fresh_synthetic_evaluations"]:
        lines.append(f"evaluations on held-out folders ({info['card']}):")
        lines += [f"  {_evaluation_line(r)}" for r in info["fresh_synthetic_evaluations"]]
    else:
        lines.append("evaluations on held-out folders: none recorded (no card beside the "
                     "model with this file's sha256)")
    if info["card_note"]:
        lines.append(f"note: {info['card_note']}")
    service = info["service"]
    if service["loads"]:
        lines.append(f"service: loads it as {_USE[service['as']]}")
    else:
        lines.append(f"service: refuses it: {service['problem']}")
    return "\n".join(lines)


@click.command("model")
@click.argument("model", metavar="MODEL", callback=model_file)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def model(model: Path, as_json: bool) -> None:
    """Show what an ONNX model is and whether the service would load it.

    MODEL is an ONNX file or the name of a model shipped with nwwatch (insitu-default). Shows
    kind, classes, architecture, paradigm, normalisation, working scale, size multiple, the
    training command and data, the file's sha256 (the model_sha256 of its rows), the ONNX
    input and outputs, the evaluations on held-out folders of its card, for a tomogram model how
    its method was chosen (held-out scores, reason, warnings), and whether the service would
    load it as an in-situ or tomogram model. Exit status 1 when it would not.
    """
    from nwwatch.segment.session import ModelLoadError

    try:
        info, problem = describe_model(model)
    except ModelLoadError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    click.echo(json.dumps(info, indent=1) if as_json else format_model(info))
    if problem is not None:
        raise click.ClickException(f"{model}: the service would not load it: {problem}")
