"""Every setting of one training run; stored in the checkpoint and replayed by ``--resume``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

PARADIGM_NAMES = ("supervised", "cct", "pseudo-label", "contrastive")
#: Negatives of the contrastive paradigm's self-supervised term (``TrainConfig.self_negatives``).
SELF_NEGATIVES = ("all", "other-class")

#: Defaults of ``nwwatch train DATA`` for the options whose tomogram default differs.
FOLDER_DEFAULTS: dict[str, Any] = {
    "arch": "unet", "model_options": {}, "epochs": 50, "steps_per_epoch": None,
    "batch_size": 8, "crop": 256, "dice_weight": 1.0, "classifier_steps": 100,
    "val_fraction": 0.2,
}
#: Defaults of ``nwwatch train --volume``: the recipe bench/bench_tomography.py measured
#: (docs/tomography.md): the paper's UNet cut to 3 levels, 60 iterations of 4 crops of 64 px.
#: Longer training let the never-labeled vacuum drift to "solid" (150 iterations: 78 % of it
#: on one synthetic volume), and the folder defaults (lean UNet, 600 iterations of 8 x 256 px)
#: called a whole noise-limited volume solid.
VOLUME_DEFAULTS: dict[str, Any] = {
    "arch": "unet-paper", "model_options": {"widths": [16, 32, 64], "dropout": 0.0},
    "epochs": 6, "steps_per_epoch": 10, "batch_size": 4, "crop": 64, "dice_weight": 0.0,
    "classifier_steps": 50,
    # every labeled slice trains: with two slices a 0.2 split would hold one out entirely
    "val_fraction": 0.0,
}

#: The paradigms that read each paradigm-specific setting (TrainConfig fields); given for
#: another paradigm it would do nothing (``nwwatch train`` refuses it).
OPTION_PARADIGMS: dict[str, tuple[str, ...]] = {
    "boundary_weight": ("supervised", "pseudo-label"),
    # the contrastive losses and its classifier's CE have no Dice term
    "dice_weight": ("supervised", "pseudo-label", "cct"),
    **dict.fromkeys(("unsupervised_weight", "rampup_epochs", "perturbations",
                     "aux_per_perturbation", "perturb_skips", "frozen_encoder"), ("cct",)),
    **dict.fromkeys(("teacher", "confidence"), ("pseudo-label",)),
    **dict.fromkeys(("embedding_dim", "temperature", "self_temperature", "self_negatives",
                     "contrastive_supervised_weight", "contrastive_self_weight",
                     "classifier_steps"), ("contrastive",)),
}

#: The methods ``nwwatch train --volume`` cross-validates when no ``--paradigm`` is given
#: (training.volume_select; the order is the preference among tied scores).
VOLUME_CANDIDATES = ("threshold", "features", "unet", "contrastive")


#: Defaults of ``nwwatch train DATA --init WEIGHTS`` (fine-tuning) for the options the user
#: did not set: the recipe measured for ~10 labeled frames (docs/training.md, "10 frames ->
#: your model"). Validation holds out 1 image in 10, and none below ``val_min_images``
#: images, so a handful of frames all train.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw", "lr": 1e-3, "epochs": 80, "crop": 384, "batch_size": 4,
    "val_fraction": 0.1, "val_min_images": 6,
}


@dataclass
class TrainConfig:
    """Settings of ``nwwatch train`` (names match the command-line options)."""

    out: str
    data: str | None = None
    paradigm: str = "supervised"
    arch: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # start from these weights (fine-tuning); see training.weights
    #: set by a run from ``init``'s model (training.weights.init_working_scale): the working
    #: scale its frames are brought into and its model records; None: read from its labels
    working_scale: dict[str, Any] | None = None
    # tomogram workflow (--volume)
    volume: str | None = None
    # one labeled slice, or several (lists of the same length, paired in order)
    slice_index: int | list[int] | None = None
    labels: str | list[str] | None = None
    # optimisation
    epochs: int = 50
    steps_per_epoch: int | None = None
    batch_size: int = 8
    unlabeled_batch_size: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    crop: int = 256
    val_fraction: float = 0.2
    #: no validation split below this many labeled images (everything trains)
    val_min_images: int = 2
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    #: threads drawing the batches ahead of the training loop (0: the loop draws them); the
    #: batches are the same for every value (training.sampler)
    workers: int = 0
    #: no progress bar (a resume keeps the run's own unless --quiet or --progress is given)
    quiet: bool = False
    augment: bool = True
    dice_weight: float = 1.0
    boundary_weight: float = 0.0  # extra cross-entropy weight near class boundaries (supervised)
    # cct
    unsupervised_weight: float = 1.0
    rampup_epochs: float = 10.0
    perturbations: tuple[str, ...] | None = None
    aux_per_perturbation: int = 1
    perturb_skips: bool = False
    frozen_encoder: str | None = None
    # pseudo-label
    teacher: str | None = None
    confidence: float = 0.9
    # contrastive
    embedding_dim: int = 16
    temperature: float = 1.0  # seed 003 eq. 4-6: plain cosine similarity
    self_temperature: float | None = None  # self-supervised term; None: ``temperature``
    # "all": every other pixel is a negative (the paper); "other-class": only pixels the
    # current classifier assigns to another class.
    self_negatives: str = "all"
    contrastive_supervised_weight: float = 1.0
    contrastive_self_weight: float = 1.0
    n_positive: int = 10
    n_negative: int = 10
    max_anchors: int = 2048
    max_pixels: int = 1024
    classifier_steps: int = 100
    # export
    quantize: str | None = None
    export: bool = True
    exporter: str = "dynamo"
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["perturbations"] is not None:
            out["perturbations"] = list(out["perturbations"])
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if values.get("perturbations") is not None:
            values["perturbations"] = tuple(values["perturbations"])
        return cls(**values)
