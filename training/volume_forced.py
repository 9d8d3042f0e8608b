"""A tomogram method the labels did not choose, checked against the label-free threshold.

``nwwatch train --volume`` keeps the method the labels prefer (:mod:`training.volume_select`).
A user can override that: ``--paradigm P`` or ``--init W`` train one network without any
selection, and ``--candidates`` without ``threshold`` leaves the label-free smoothed threshold
out. Such a method can be clearly worse than a global threshold on the very labels given
(the benchmark's default volume, seed 0, r = 0.02: a forced U-Net with IoU 0.17 where the
threshold gives 0.79, docs/tomography.md), so the threshold is still cross-validated on the
same held-out labeled pixels, as a reference that is never kept:

- when the kept method's held-out balanced accuracy is below the threshold's by more than
  :data:`THRESHOLD_MARGIN`, training warns with advice and the model records the sentence
  (``extra["selection"]["threshold_check"]``); every mask of that model is then ``suspect``
  with ``labels_favour_threshold`` (:mod:`nwwatch.volume.verdict`);
- when no patch can be held out, the model records ``grouping = "none"`` as the default
  workflow does, and its masks are ``suspect`` with ``method_unvalidated``.

The margin is the largest one by which the default workflow ever keeps a candidate below the
best (:data:`training.volume_select.FOREST_MARGIN`), so a model the default workflow chose,
with the threshold among its candidates, is never flagged; the rule and its check are in
bench/results/tomo_forced_rule.txt.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from training.config import TrainConfig

#: The kept method's held-out balanced accuracy may be this far below the threshold's before
#: its masks are flagged ``labels_favour_threshold``.
THRESHOLD_MARGIN = 0.05
#: The candidate name of each ``--paradigm`` that is a candidate of the default workflow.
_CANDIDATE_OF = {"supervised": "unet", "contrastive": "contrastive"}


def forced_method(config: TrainConfig) -> str:
    """The name a forced ``--paradigm`` trains under in the selection record: the default
    workflow's candidate name (``unet``, ``contrastive``) or the paradigm's own (``cct``,
    ``pseudo-label``)."""
    return _CANDIDATE_OF.get(config.paradigm, config.paradigm)


def kept_score(method: str, scores: dict[str, float], stopped: dict[str, float]) -> float:
    """The kept method's held-out score, or the upper bound where its folds stopped early
    (NaN: not scored)."""
    score = scores.get(method, math.nan)
    return stopped.get(method, math.nan) if math.isnan(score) else score


def threshold_check(method: str, scores: dict[str, float], stopped: dict[str, float],
                    forced_by: str) -> str:
    """The warning sentence when the held-out labeled pixels favour the threshold over the
    kept ``method`` by more than :data:`THRESHOLD_MARGIN`, else ``""``.

    scores, stopped : held-out balanced accuracies (0..1) as in
        :class:`training.volume_select.Selection`. forced_by : the options that made
        ``method`` the only choice (``"--paradigm supervised"``, ``"--candidates unet"``).
    """
    threshold = scores.get("threshold", math.nan)
    kept = kept_score(method, scores, stopped)
    if method == "threshold" or math.isnan(threshold) or math.isnan(kept):
        return ""
    if not kept < threshold - THRESHOLD_MARGIN:
        return ""
    bound = "at most " if method in stopped else ""
    how = f" (kept by {forced_by})" if forced_by else ""
    if forced_by.startswith("--candidates"):
        advice = "add threshold to --candidates"
    elif forced_by:
        options = " and ".join(w for w in forced_by.split() if w.startswith("--"))
        advice = f"drop {options} to let the labels choose"
    else:
        advice = "let the labels choose among all candidates"
    return (f"the labels favour the threshold: on held-out labeled pixels the label-free "
            f"smoothed threshold scores {threshold:.3f} (balanced accuracy) and {method}{how} "
            f"{bound}{kept:.3f}, more than {THRESHOLD_MARGIN:g} lower: {advice}")


def check_forced(config: TrainConfig, forced_by: str,
                 echo: Callable[[str], None] | None = None):
    """Cross-validate the label-free threshold and the forced network of ``config`` (its
    ``paradigm``, ``--init`` and settings) on the same folds over the labeled patches.

    Returns a :class:`training.volume_select.Selection` with ``method`` the forced one,
    ``forced_by`` and ``threshold_check`` set (nothing is exported: the caller trains the
    final model and writes the record with :func:`training.volume_select.add_selection`).
    The forced network's folds stop early once it is flagged whatever the remaining folds
    give (its bound goes to ``stopped``). Label warnings are recorded, not echoed (the
    training run echoes them).
    """
    from nwwatch.volume.verdict import MIN_PATCHES_TO_CHECK
    from training.data import load_volume_slices
    from training.volume_candidates import CandidateTrainer
    from training.volume_folds import count_patches, make_folds, patch_groups
    from training.volume_models import Z_SIGMA_PX
    from training.volume_select import Selection, _cross_validate, label_warnings

    echo = echo or (lambda line: None)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    indices = config.slice_index if isinstance(config.slice_index, list) \
        else [config.slice_index]
    paths = config.labels if isinstance(config.labels, list) else [config.labels]
    data = load_volume_slices(config.volume, list(zip(indices, paths, strict=True)))
    labels = [item.label for item in data.labeled]
    groups = patch_groups(labels)
    folds = make_folds(groups, labels, config.seed)
    n_patches = count_patches(labels)
    method = forced_method(config)
    scores = {"threshold": math.nan, method: math.nan}
    seconds: dict[str, float] = {}
    stopped: dict[str, float] = {}
    warnings = label_warnings(data)
    if not folds or n_patches < MIN_PATCHES_TO_CHECK:
        # With two or three patches each fold's network learns from one or two of them and
        # is a different model from the one trained on all: on the benchmark (r = 0.02, two
        # patches) such folds scored forced networks 0.17-0.30 below the threshold where
        # their masks were as good (bench/results/tomo_forced_rule.txt).
        reason = (f"{method} was kept by {forced_by}; {n_patches} labeled patches, fewer than "
                  f"{MIN_PATCHES_TO_CHECK}: too few to check it against the threshold")
        warnings.append(f"{n_patches} labeled patches are too few to check {method} "
                        f"({forced_by}) against the threshold: label at least "
                        f"{MIN_PATCHES_TO_CHECK} separate patches, two of each class; every "
                        f"mask of this model is suspect (method_unvalidated)")
        echo(f"warning: {warnings[-1]}")
        return Selection(method, scores, "none", 0, reason, warnings, seconds, stopped,
                         forced_by=forced_by)
    echo(f"checking {method} ({forced_by}) against the label-free threshold: {len(folds)} "
         f"folds over {n_patches} patches")
    with tempfile.TemporaryDirectory(prefix="nwwatch-forced-") as work:
        trainer = CandidateTrainer(config, data, Path(work), Z_SIGMA_PX)
        for name, floor in (("threshold", -math.inf), (method, None)):
            if floor is None:  # below this the forced method is flagged whatever comes
                floor = scores["threshold"] - THRESHOLD_MARGIN
            start = time.perf_counter()
            score, run = _cross_validate(trainer, name, labels, groups, folds, floor)
            seconds[name] = time.perf_counter() - start
            if run < len(folds):
                stopped[name] = score
                echo(f"  {name:12s} stopped after {run} of {len(folds)} folds: at most "
                     f"{score:.4f} ({seconds[name]:.0f} s)")
            else:
                scores[name] = score
                echo(f"  {name:12s} held-out balanced accuracy {score:.4f} "
                     f"({seconds[name]:.0f} s)")
    check = threshold_check(method, scores, stopped, forced_by)
    reason = f"{method} was kept by {forced_by}, not chosen by the labels"
    return Selection(method, scores, "patches", len(folds), reason, warnings, seconds,
                     stopped, forced_by=forced_by, threshold_check=check)


def forced_by_options(paradigm: str | None, init: str | None,
                      candidates: Sequence[str] | None = None) -> str:
    """The options as the user gave them that made one method the only choice."""
    parts = [f"--paradigm {paradigm}"] if paradigm else []
    parts += [f"--init {init}"] if init else []
    parts += [f"--candidates {','.join(candidates)}"] if candidates else []
    return " ".join(parts)
