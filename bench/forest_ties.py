"""How much the feature forest's vote ties move the benchmark's IoU.

The exported forest sums each tree's leaf class fractions and divides by the number of trees,
so a 20-20 vote is exactly 0.5 (pore at every cut, as in scikit-learn). Graphs exported
before held fraction / 40 in every leaf, which float32 sums to 0.50000006 for the same vote
(solid at the runtime's ``p(solid) > 0.5``). For each seed this trains the default workflow
with the forest as its only candidate (``bench_tomography --methods auto --candidates
features``, r = 0.25, 96³), segments the volume with the exported graph and with the same
graph given the former leaf weights (fraction / number of trees, float64 then float32, and no
division), and records both IoUs, the voxels whose mask differs and the exact-tie voxels.

Usage::

    python -m bench.forest_ties --seeds 0 1 2 --family saturated \\
        --volume-options '{"tilt_max_deg": 80, "pore_length_px": 6, "counts_per_voxel": 1,
        "saturation_px": 20}' --json bench/results/tomography_forest_ties.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bench.bench_tomography import iou_solid, write_inputs
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomogram import simulate_tomogram


def former_graph(path: Path, out: Path) -> Path:
    """The graph at ``path`` with the leaf weights of the former export (fraction / number
    of trees) and the division by the number of trees removed (divided by 1)."""
    model = onnx.load(str(path))
    graph = model.graph
    (initializer,) = [i for i in graph.initializer if i.name == "n_trees"]
    n_trees = float(numpy_helper.to_array(initializer))
    initializer.CopyFrom(numpy_helper.from_array(np.array(1.0, np.float32), "n_trees"))
    (node,) = [n for n in graph.node if n.op_type == "TreeEnsembleClassifier"]
    (weights,) = [a for a in node.attribute if a.name == "class_weights"]
    fractions = list(weights.floats)
    del weights.floats[:]
    weights.floats.extend(float(np.float64(f) / n_trees) for f in fractions)
    onnx.save_model(model, str(out))
    return out


def run_seed(seed: int, args, work: Path) -> dict:
    from nwwatch.segment.session import Segmenter
    from nwwatch.volume import segment_volume
    from training.config import TrainConfig
    from training.volume_select import select_and_train

    sim = simulate_tomogram(args.size, seed=seed, **args.volume_options)
    k = args.size // 2
    rng = np.random.default_rng([seed, int(round(args.rate * 1000))])
    labels = patch_labels(sim.truth[k], args.rate, rng, grain=sim.grain[k])
    folder = Path(tempfile.mkdtemp(prefix=f"ties{seed}_", dir=work))
    volume_path, labels_path = write_inputs(folder, sim.volume, labels, k, "features")
    config = TrainConfig(out=str(folder / "forest.onnx"), volume=str(volume_path),
                         slice_index=[k], labels=[str(labels_path)], val_fraction=0.0,
                         seed=seed, threads=1)
    selection, model = select_and_train(config, ("features",))
    row = {"seed": seed, "family": args.family, "rate": args.rate, "size": args.size,
           "chosen": selection.method}
    masks = {}
    for name, path in (("now", Path(model)),
                       ("former", former_graph(Path(model), folder / "former.onnx"))):
        seg = segment_volume(Segmenter(path, providers=("cpu",), threads=1), sim.volume,
                             return_probability=True)
        masks[name] = seg.mask
        row[f"iou_{name}"] = iou_solid(seg.mask, sim.truth, [k])
        if name == "now":
            row["tie_voxels"] = int(np.count_nonzero(seg.solid_probability == 0.5))
    row["changed_voxels"] = int(np.count_nonzero(masks["now"] != masks["former"]))
    row["voxels"] = int(sim.truth.size)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--family", default="default")
    ap.add_argument("--volume-options", type=json.loads, default={})
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            rows.append(run_seed(seed, args, Path(work)))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {"command": "python -m bench.forest_ties " + shlex.join(sys.argv[1:]),
                    "env": "OMP_NUM_THREADS=1, nice -n 10"}
        args.json.write_text(json.dumps({"settings": settings, "records": rows}, indent=1))


if __name__ == "__main__":
    main()
