"""Write the JSON card shipped next to a model (``nwwatch/models/<name>.json``).

The card repeats what the model file holds (hash, size, classes, arch, paradigm, training
command, training-data hash, validation metrics, and for a fine-tune the starting weights'
score ``start_metrics``) and adds what only a separate evaluation can say: scores on fresh
labeled folders (``nwwatch evaluate``, with its CPU time per image; listed under
``fresh_synthetic_evaluations`` whatever their labels, each with its ``angle_reference``:
synthetic truth or human angles) and a status line.

Each evaluation keeps the folder scored (``data``) beside its ``description``. A folder whose
labeled images the model has seen is refused, nothing written: the folder it was trained on
(``nwwatch evaluate``'s ``seen_by_model``) or a copy of its training data (the same
``training_data_sha256``). Their scores are not held-out figures, and the card files its
evaluations as fresh ones.

    python -m training.model_card nwwatch/models/insitu-default.onnx \\
        --eval /data/eval40 "40 frames, nwwatch synth insitu --seed 7 (not seen in training)" \\
        --training-data "1200 synthetic 512x512 frames, ..." --status "..." \\
        --out nwwatch/models/insitu-default.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from nwwatch.atomic import atomic_write
from nwwatch.evaluate import ModelKindError, evaluate_folder, strict_json
from nwwatch.filehash import file_sha256
from nwwatch.io.dataset import DatasetLayoutError, pair_folder
from nwwatch.segment.session import ModelLoadError, Segmenter


class SeenByModelError(ValueError):
    """An ``--eval`` folder whose labeled images the model has seen: not a fresh evaluation."""


def folder_data_sha256(folder: Path) -> str:
    """The ``training_data_sha256`` a model trained on the DATA folder ``folder`` records:
    sha256 over its sorted (stem, image sha256, label sha256) triples
    (:meth:`training.data.TrainingData.sha256`)."""
    digest = hashlib.sha256()
    for stem, image_path, label_path in pair_folder(folder):
        digest.update(f"{stem}\0{file_sha256(image_path)}\0{file_sha256(label_path)}\n"
                      .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def build_card(model: Path, evaluations: list[tuple[Path, str]], training_data: str,
               status: str, threads: int = 1) -> dict[str, Any]:
    """The card of ``model``: its metadata plus one evaluation per (folder, description).

    Raises
    ------
    SeenByModelError : an evaluation folder holds images the model has seen (its training
        folder, or a copy of its training data): its scores would be filed as fresh ones.
    """
    segmenter = Segmenter(model, providers=("cpu",), threads=threads)
    meta = segmenter.metadata
    card: dict[str, Any] = {
        "file": model.name, "sha256": segmenter.model_sha256,
        "size_bytes": model.stat().st_size,
        "kind": meta.kind, "class_names": list(meta.class_names), "arch": meta.arch,
        "architecture": meta.extra.get("model_config"), "paradigm": meta.paradigm,
        "size_multiple": meta.size_multiple, "normalization": meta.normalization,
        "working_scale": segmenter.working_scale.to_dict(),
        "training_command": meta.training_command,
        "training_data_sha256": meta.training_data_sha256, "training_data": training_data,
        "validation_metrics": meta.validation_metrics,
    }
    if isinstance(meta.extra.get("start_metrics"), dict):
        # a fine-tune's starting weights on the images that gave validation_metrics, before
        # training: a fine-tune that scores below them is seen as such
        card["start_metrics"] = meta.extra["start_metrics"]
    # every evaluation, human-labelled folders included, goes under this key, which the
    # card's readers look up; each one's angle_reference says what its angles were scored
    # against
    card["fresh_synthetic_evaluations"] = []
    for folder, description in evaluations:
        if meta.training_data_sha256 and folder_data_sha256(folder) == meta.training_data_sha256:
            # a copy of the training folder is not matched by path (evaluate's seen_by_model)
            raise SeenByModelError(f"{folder}: its labeled images are the model's training "
                                   f"data (the model's training_data_sha256): not a fresh "
                                   f"evaluation; give a folder of images it has not seen")
        report = evaluate_folder(model, folder, threads=threads)
        if report.seen_by_model:
            seen = report.seen_by_model
            raise SeenByModelError(f"{folder}: {len(seen)} of its {report.images} labeled "
                                   f"images are the model's own ({report.seen_why}: "
                                   f"{', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''})"
                                   f": not a fresh evaluation; give a folder of images it has "
                                   f"not seen")
        entry = report.as_dict()
        entry["model"] = str(model)
        # the folder scored stays named: the description says what it is, not where
        entry["data"] = str(folder)
        entry["description"] = description
        card["fresh_synthetic_evaluations"].append(entry)
    card["status"] = status
    return strict_json(card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--eval", nargs=2, action="append", default=[],
                        metavar=("FOLDER", "DESCRIPTION"))
    parser.add_argument("--training-data", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        card = build_card(args.model, [(Path(f), d) for f, d in args.eval], args.training_data,
                          args.status, args.threads)
    except (DatasetLayoutError, ModelLoadError, ModelKindError, SeenByModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with atomic_write(args.out) as handle:  # a card is never half written
        handle.write((json.dumps(card, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
