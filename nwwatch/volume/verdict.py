"""Is a tomogram mask to be trusted? A status and stable reason codes for the volume row.

A model trained on a few labeled patches fails without any error: it calls most of the vacuum
solid, or (with very few solid pixels labeled) calls nothing solid at all. Each check below
compares the mask with something that does not share the model's failure modes:

- ``mask_collapsed``: the mask's solid share, or its non-solid share, is below
  ``COLLAPSE_RATIO`` of what *both* references below suggest (an empty mask of a volume whose
  labels and threshold show solid). This is the case the agreement cannot judge: it is not
  computed under 2 % solid.
- ``solid_fraction_mismatch``: the mask's solid share lies outside ``MISMATCH_FACTOR`` times
  the range the two references span.
- ``uncertain``: more than ``UNCERTAIN_WARN_FRACTION`` of the voxels have a solid probability
  strictly inside ``UNCERTAIN_BAND``.
- ``threshold_disagreement``: IoU with the label-free blurred-Otsu reference below
  ``AGREEMENT_WARN_BELOW`` (:mod:`nwwatch.volume.crosscheck`).
- ``solid_beyond_threshold``: more than ``BEYOND_WARN_ABOVE`` of the mask's solid lies farther
  than ``BEYOND_DISTANCE_PX`` (in its slice) from any solid of the same reference: vacuum
  called solid far from the grain, which the agreement barely sees when the grain itself
  agrees (:func:`nwwatch.volume.crosscheck.solid_beyond_reference`).
- ``few_labeled_pixels``: the model was trained on fewer than ``MIN_LABELED_PIXELS`` labeled
  pixels of a class (``ModelMetadata.extra["class_pixel_counts"]``).
- ``method_unvalidated``: ``nwwatch train --volume`` could hold no labeled patch out
  (``extra["selection"]["grouping"] == "none"``), so the kept method was never checked against
  a labeled pixel it had not seen. On the benchmark's saturated volume the kept threshold was
  then 0.08 IoU below a forest trained on the same two patches, and nothing in the mask
  showed it (docs/tomography.md).

- ``contrast_inverted`` (models that recorded ``extra["contrast"]``): the mask's solid is
  darker than the rest while the labels' solid is brighter (or the reverse), or the mask's
  solid is the flatter of its two classes (standard-deviation ratio on the other side of 1)
  and the majority, while on the training volume, cut half-way between the labeled class
  means, the solid was clearly the more variable one (ratio beyond ``SD_RATIO_CLEAR``) and a
  minority, or the reverse. A volume whose grey levels are inverted keeps the labels' bright
  class separated from the dark one, so the first test alone does not see it: the model
  calls the vacuum (and the pores) solid, and the vacuum is the flat class and, beside a
  grain, most of the volume. The spread alone is no evidence: where a volume holds little
  quiet vacuum (a crop inside the grain, a thin slab beside it) the rest is mostly noisy pore,
  and a SIRT reconstruction, binning or a gamma change the noise of each class, so a right
  mask's solid can be the flatter class (0.80-0.98 x) while it is a minority, as the grain's
  solid is. Where the noise is alike in both classes (a filtered back-projection spreads it
  everywhere) the spread says nothing; the vacuum called solid then shows as the classes'
  shares swapped alone: the mask's solid the majority where the training volume's was a
  minority (or the reverse), by odds ``SHARE_ODDS_SWAPPED`` or more apart.
- ``voxel_size_mismatch`` (models that recorded ``extra["voxel_size_nm"]``, volumes that
  declare their voxel size): the volume's voxel size differs from the training volume's by
  more than ``VOXEL_SIZE_FACTOR`` on an axis both declare (a size a file does not declare,
  such as the depth of an ImageJ stack without ``spacing=``, is neither recorded nor
  compared). A model learns its features (blur widths,
  texture, the Z blur) in voxels, so a binned volume gets a worse mask with nothing else
  in the row to show it.
- ``no_contrast`` (same models): the mask's classes lie less than ``NO_CONTRAST_RATIO`` times
  as many pooled standard deviations apart as the training volume's two sides of that cut (a
  volume of vacuum only, or a blank one: each volume is scaled to its own intensity range, so
  noise alone fills the range the model sees, and the model calls its bright half solid).
  Both compare statistics of the volume in the normalised units the model sees
  (:func:`nwwatch.volume.crosscheck.mask_contrast`) and need the mask to call between
  ``MIN_REFERENCE_SHARE`` and 1 - ``MIN_REFERENCE_SHARE`` of the voxels solid.

The two solid-share references: the blurred-Otsu reference mask (no labels), and the same
blurred volume cut half-way between the labeled pixels' mean intensities of solid and of the
other classes (``extra["class_mean_intensity"]``, normalised units, written by ``nwwatch train
--volume``). Neither is an accuracy; together they catch the empty and the flooded mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nwwatch.volume.crosscheck import BEYOND_DISTANCE_PX, ClassContrast

#: Solid probabilities strictly inside this band count as uncertain.
UNCERTAIN_BAND = (0.2, 0.8)
#: Above this uncertain fraction the mask is suspect.
UNCERTAIN_WARN_FRACTION = 0.25
#: Below this threshold agreement (IoU with the label-free reference) the mask is suspect.
AGREEMENT_WARN_BELOW = 0.5
#: Above this share of the mask's solid far from the reference's solid the mask is suspect.
BEYOND_WARN_ABOVE = 0.05
#: A class share (solid, or non-solid) below this ratio of both references' is a collapse.
COLLAPSE_RATIO = 0.25
#: A solid share beyond this factor of the references' range (either side) is a mismatch.
MISMATCH_FACTOR = 2.0
#: Fewer labeled pixels of a class than this: the model had too little to learn from.
MIN_LABELED_PIXELS = 50
#: Below this solid share in both references there is no verdict on the solid share (a volume
#: that shows almost no solid cannot tell a collapse from a correct empty mask).
MIN_REFERENCE_SHARE = 0.002

#: The mask's classes this far apart (in pooled standard deviations), or less, times the
#: training volume's separation at the labels' cut: no contrast.
NO_CONTRAST_RATIO = 0.55
#: The training volume's solid is clearly the more variable class when its standard
#: deviation is at least this factor that of the rest (clearly the flatter at the inverse).
SD_RATIO_CLEAR = 1.25
#: The mask's solid the majority where the training volume's was a minority (or the reverse),
#: its odds (solid / rest) this factor or more from the training volume's: classes swapped.
SHARE_ODDS_SWAPPED = 10.0

#: The key of a tomogram model's ``extra`` that records its training volume's voxel size:
#: [z, y, x] nm as the volume's file declared it, null on an axis it declared none for
#: (``Volume.declared_voxel_size_nm``), or null when it declared none at all.
VOXEL_SIZE_KEY = "voxel_size_nm"
#: The key that says where that record comes from: "volume" (the file of ``nwwatch train
#: --volume``) or "data_folder" (a DATA folder, whose labeled slices are 2-D images: null).
VOXEL_SIZE_SOURCE_KEY = "voxel_size_source"
#: A volume whose voxel size is more than this factor larger or smaller than the training
#: volume's on any axis is suspect. Binning, the usual way a volume's size changes, goes in
#: steps of 2 or more: a forest trained at 0.32 nm gave the same grain binned 2x an IoU of
#: 0.677 where one trained at 0.64 nm gives 0.763; resampled by 1.25 and 1.5 it lost 0.014
#: and 0.026 against 0.055 at 2 (docs/tomography.md). So a binning is flagged, while small
#: differences (another magnification step, a calibration's few %) are not.
VOXEL_SIZE_FACTOR = 1.5

#: Every reason code a volume row can carry, in the order they are reported.
REASON_CODES = ("mask_collapsed", "solid_fraction_mismatch", "uncertain",
                "threshold_disagreement", "solid_beyond_threshold", "contrast_inverted",
                "no_contrast", "voxel_size_mismatch", "few_labeled_pixels",
                "method_unvalidated")


@dataclass(frozen=True)
class MaskVerdict:
    """The verdict on one mask.

    status : ``"ok"`` or ``"suspect"``.
    reason_codes : codes of :data:`REASON_CODES` that fired (empty when ok).
    why : one human-readable sentence per code, same order.
    solid_fraction : share (0..1) of the mask's voxels that are solid.
    reference_solid_fraction : share the blurred-Otsu reference calls solid (NaN: none).
    labels_solid_fraction : share on the solid side of the labeled class means (NaN: the model
        recorded no class means).
    """

    status: str
    reason_codes: tuple[str, ...]
    why: tuple[str, ...]
    solid_fraction: float
    reference_solid_fraction: float
    labels_solid_fraction: float

    @property
    def reason_code(self) -> str:
        """The codes joined by commas ("" when ok): the row's ``reason_code``."""
        return ",".join(self.reason_codes)


def labels_threshold_share(blurred: np.ndarray, value_range: tuple[float, float],
                           class_mean_intensity: dict[str, float] | None,
                           solid_name: str = "solid") -> float:
    """Share of the voxels of ``blurred`` on the solid side of the labeled class means.

    Voxels without data (NaN) are on neither side but count in the whole, as they do in the
    mask's solid share and the reference's, the numbers this share is compared with.

    Parameters
    ----------
    blurred : float (Z, Y, X), the volume clipped to ``value_range`` and blurred per slice.
    value_range : (low, high) raw intensities that the model's normalisation maps to [-1, 1].
    class_mean_intensity : {class name: mean normalised intensity of its labeled pixels}.

    Returns NaN without the solid class and at least one other class.
    """
    means = class_mean_intensity or {}
    others = [float(v) for k, v in means.items() if k != solid_name]
    if solid_name not in means or not others:
        return math.nan
    solid_mean, other_mean = float(means[solid_name]), sum(others) / len(others)
    if solid_mean == other_mean:
        return math.nan
    low, high = value_range
    cut = low + (0.5 * (solid_mean + other_mean) + 1.0) * 0.5 * (high - low)
    side = blurred > cut if solid_mean > other_mean else blurred < cut
    return float(np.count_nonzero(side) / max(1, blurred.size))


def trained_contrast(extra: dict) -> ClassContrast | None:
    """The training volume's :class:`ClassContrast` at the labels' cut, from a model's
    ``extra["contrast"]["volume"]`` (written by ``nwwatch train --volume``); None when the
    model recorded none.

    Raises
    ------
    ValueError : the key holds something else than finite numbers with a non-zero
        ``separation_sd`` and a positive ``solid_sd_ratio`` (the message names the key).
    """
    contrast = extra.get("contrast")
    if contrast is None:
        return None
    volume = contrast.get("volume") if isinstance(contrast, dict) else None
    if volume is None and isinstance(contrast, dict):
        return None
    try:
        separation = float(volume["separation_sd"])
        ratio = float(volume["solid_sd_ratio"])
        share = float(volume.get("solid_share", math.nan))
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f'extra["contrast"]["volume"] must hold the numbers separation_sd and '
                         f'solid_sd_ratio, got {volume!r} ({exc})') from None
    if not (math.isfinite(separation) and separation != 0.0 and math.isfinite(ratio)
            and ratio > 0.0):
        raise ValueError(f'extra["contrast"]["volume"] must have a finite, non-zero '
                         f'separation_sd and a finite, positive solid_sd_ratio, got {volume!r}')
    return ClassContrast(separation, ratio, share)


#: (z, y, x) nm, None on an axis whose size is not declared.
AxisSizes = tuple[float | None, float | None, float | None]


def trained_voxel_size(extra: dict) -> AxisSizes | None:
    """The training volume's voxel size (z, y, x) nm from a model's ``extra["voxel_size_nm"]``
    (written by ``nwwatch train --volume``), None on an axis recorded as null (the volume
    declared no size there); None when the model recorded none, or recorded that the volume
    declared none (null, or null on every axis).

    Raises
    ------
    ValueError : the key holds something else than three values, each a finite, positive
        number or null, or null (the message names the key).
    """
    sizes = extra.get(VOXEL_SIZE_KEY)
    if sizes is None:
        return None
    try:
        values = tuple(None if v is None else float(v) for v in sizes)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(v is None or (math.isfinite(v) and v > 0)
                                   for v in values):
        raise ValueError(f'extra["{VOXEL_SIZE_KEY}"] must be three positive numbers (z, y, x '
                         f'nm; null on an axis not declared) or null, got {sizes!r}')
    return None if values == (None, None, None) else values  # type: ignore[return-value]


def sizes_text(sizes: tuple[float | None, ...]) -> str:
    """(z, y, x) sizes as "0.32 x 0.32 x 0.32", "?" for an axis not declared."""
    return " x ".join("?" if v is None else f"{v:.4g}" for v in sizes)


def _voxel_size_code(voxel_size_nm: AxisSizes | None,
                     trained: AxisSizes | None) -> dict[str, str]:
    """``voxel_size_mismatch`` (module docstring) of a volume's voxel size, on the axes that
    both it and the training volume declare."""
    if voxel_size_nm is None or trained is None:
        return {}
    axes = [(axis, float(v) / t) for axis, v, t in zip("zyx", voxel_size_nm, trained,
                                                      strict=True)
            if v is not None and t is not None]
    if not axes:
        return {}
    factors = [f for _, f in axes]
    if max(max(f, 1.0 / f) for f in factors) <= VOXEL_SIZE_FACTOR:
        return {}
    names = "".join(axis for axis, _ in axes)
    if max(factors) - min(factors) <= 1e-3 * max(factors):
        apart = f"{factors[0]:.3g} x"
    else:
        apart = " / ".join(f"{f:.3g}" for f in factors) + f" x ({' / '.join(names)})"
    # an axis that either does not declare is left out of the comparison: say so
    unchecked = [axis for axis in "zyx" if axis not in names]
    unsaid = (f" ({' and '.join(unchecked)} not compared: not declared by both)"
              if unchecked else "")
    return {"voxel_size_mismatch": (
        f"the volume's voxels are {sizes_text(tuple(voxel_size_nm))} nm (z x y x x), "
        f"{apart} the training volume's {sizes_text(trained)} nm{unsaid} (more than "
        f"{VOXEL_SIZE_FACTOR:g} x apart on an axis): the model learned its features at "
        f"another scale; resample the volume to the training voxel size, or train a model "
        f"on a volume of this one")}


def _contrast_codes(contrast: ClassContrast | None, trained: ClassContrast | None
                    ) -> dict[str, str]:
    """``contrast_inverted`` / ``no_contrast`` (module docstring) of a mask's contrast."""
    if contrast is None or trained is None or not math.isfinite(contrast.separation_sd):
        return {}
    if not MIN_REFERENCE_SHARE <= contrast.solid_share <= 1.0 - MIN_REFERENCE_SHARE:
        return {}  # an (almost) empty or full mask: the collapse check's case
    brighter = trained.separation_sd > 0
    # positive: apart in the direction the labels say
    along = contrast.separation_sd if brighter else -contrast.separation_sd
    expected = abs(trained.separation_sd)
    bright, dark = ("brighter", "darker") if brighter else ("darker", "brighter")
    ratio, trained_ratio = contrast.solid_sd_ratio, trained.solid_sd_ratio
    share, trained_share = contrast.solid_share, trained.solid_share
    if along < 0:
        return {"contrast_inverted": (
            f"the mask's solid is {dark} than the rest ({abs(along):.2f} pooled standard "
            f"deviations) while the labeled solid is {bright}: is the contrast inverted?")}
    # The mask's solid the majority where the training volume's was a minority (or the
    # reverse): what the vacuum called solid does to the shares.
    swapped = (math.isfinite(trained_share)
               and MIN_REFERENCE_SHARE <= trained_share <= 1.0 - MIN_REFERENCE_SHARE
               and (share > 0.5) != (trained_share > 0.5))
    if swapped and math.isfinite(ratio) and (
            (trained_ratio >= SD_RATIO_CLEAR and ratio < 1.0)
            or (trained_ratio <= 1.0 / SD_RATIO_CLEAR and ratio > 1.0)):
        return {"contrast_inverted": (
            f"the mask's solid is the {'flatter' if ratio < 1.0 else 'more variable'} of its "
            f"two classes (standard deviation {ratio:.2f} x the rest's) and the "
            f"{'majority' if share > 0.5 else 'minority'} ({share:.1%}) while on the "
            f"training volume, cut between the labeled class means, the solid was the "
            f"{'more variable' if ratio < 1.0 else 'flatter'} ({trained_ratio:.2f} x) and "
            f"the {'minority' if share > 0.5 else 'majority'} ({trained_share:.1%}): is the "
            f"contrast inverted (or does the grain fill {'more' if share > 0.5 else 'less'} "
            f"of this volume than of the training one)?")}
    if along < NO_CONTRAST_RATIO * expected:
        return {"no_contrast": (
            f"the mask's solid and the rest are {along:.2f} pooled standard deviations apart "
            f"in intensity, under {NO_CONTRAST_RATIO:g} x the training volume's {expected:.2f} "
            f"at the labels' cut: a volume without contrast (vacuum only, blank)?")}
    if swapped and abs(_logit(share) - _logit(trained_share)) >= math.log(SHARE_ODDS_SWAPPED):
        return {"contrast_inverted": (
            f"the mask calls {share:.1%} of the volume solid, the "
            f"{'majority' if share > 0.5 else 'minority'}, where the training volume cut "
            f"between the labeled class means had {trained_share:.1%}: is the contrast "
            f"inverted (or does the grain fill {'more' if share > 0.5 else 'less'} of this "
            f"volume than of the training one)?")}
    return {}


def _logit(share: float) -> float:
    return math.log(share / (1.0 - share))


def labeled_pixels(count: int, class_name: str) -> str:
    """``"1 labeled pore pixel"``, ``"9 labeled pore pixels"``: the count of a class's labeled
    pixels as the verdict and the training warning say it."""
    return f"{count} labeled {class_name} pixel{'' if count == 1 else 's'}"


def assess_mask(solid_fraction: float, uncertain_fraction: float, threshold_agreement: float,
                reference_solid_fraction: float, labels_solid_fraction: float,
                class_pixel_counts: dict[str, int] | None = None,
                selection: dict | None = None,
                solid_beyond_reference: float = math.nan,
                contrast: ClassContrast | None = None,
                trained: ClassContrast | None = None,
                voxel_size_nm: AxisSizes | None = None,
                trained_voxel_size_nm: AxisSizes | None = None
                ) -> MaskVerdict:
    """Status and reason codes of a mask from its numbers (see the module docstring).

    Parameters
    ----------
    solid_fraction, uncertain_fraction : shares 0..1 of the mask.
    threshold_agreement : IoU 0..1 with the label-free reference, NaN when not computed.
    reference_solid_fraction, labels_solid_fraction : the references' solid shares, NaN when
        unknown.
    class_pixel_counts : labeled pixels per class the model was trained on, if recorded.
    selection : the model's ``extra["selection"]`` (how ``nwwatch train --volume`` chose its
        method), if recorded.
    solid_beyond_reference : share 0..1 of the mask's solid far from the reference's solid
        (:func:`nwwatch.volume.crosscheck.solid_beyond_reference`), NaN when not computed.
    contrast : the mask's solid against the rest on the volume
        (:func:`nwwatch.volume.crosscheck.mask_contrast`), if computed.
    trained : the training volume's at the labels' cut (:func:`trained_contrast`), if the
        model recorded it; without both, no ``contrast_inverted`` / ``no_contrast``.
    voxel_size_nm : the volume's voxel size (z, y, x) nm, if it declares one; None on an
        axis it declares no size for.
    trained_voxel_size_nm : the training volume's (:func:`trained_voxel_size`), if the model
        recorded it; ``voxel_size_mismatch`` compares the axes both declare.
    """
    codes: dict[str, str] = {}
    refs = [f for f in (reference_solid_fraction, labels_solid_fraction) if math.isfinite(f)]
    if refs and max(refs) >= MIN_REFERENCE_SHARE:
        low, high = min(refs), max(refs)
        if (solid_fraction < COLLAPSE_RATIO * low
                or 1.0 - solid_fraction < COLLAPSE_RATIO * (1.0 - high)):
            codes["mask_collapsed"] = (f"the mask calls {solid_fraction:.2%} of the volume solid; "
                                       f"the references suggest {low:.2%}-{high:.2%}")
        elif not low / MISMATCH_FACTOR <= solid_fraction <= min(1.0, high * MISMATCH_FACTOR):
            # Say which side it fell off: "beyond 2x" read as too much solid for a mask
            # with too little.
            if solid_fraction < low / MISMATCH_FACTOR:
                side = f"below 1/{MISMATCH_FACTOR:g} of the lower"
            else:
                side = f"above {MISMATCH_FACTOR:g}x the higher"
            codes["solid_fraction_mismatch"] = (
                f"solid fraction {solid_fraction:.2%} is {side} of the references' "
                f"{low:.2%}-{high:.2%}")
    if uncertain_fraction > UNCERTAIN_WARN_FRACTION:
        codes["uncertain"] = (f"uncertain_fraction {uncertain_fraction:.3f} > "
                              f"{UNCERTAIN_WARN_FRACTION}")
    if math.isfinite(threshold_agreement) and threshold_agreement < AGREEMENT_WARN_BELOW:
        codes["threshold_disagreement"] = (f"threshold_agreement {threshold_agreement:.3f} < "
                                           f"{AGREEMENT_WARN_BELOW}")
    if (math.isfinite(solid_beyond_reference) and solid_beyond_reference > BEYOND_WARN_ABOVE
            and math.isfinite(reference_solid_fraction)
            and reference_solid_fraction >= MIN_REFERENCE_SHARE):
        codes["solid_beyond_threshold"] = (
            f"{solid_beyond_reference:.1%} of the mask's solid lies more than "
            f"{BEYOND_DISTANCE_PX:g} px from any solid a threshold finds in its slice "
            f"(> {BEYOND_WARN_ABOVE:.0%}): vacuum called solid away from the grain?")
    codes.update(_contrast_codes(contrast, trained))
    codes.update(_voxel_size_code(voxel_size_nm, trained_voxel_size_nm))
    few = {name: int(n) for name, n in (class_pixel_counts or {}).items()
           if int(n) < MIN_LABELED_PIXELS}
    if few:
        # The same advice as the training log's warning: the row may be all a user reads.
        codes["few_labeled_pixels"] = (
            "the model was trained on only "
            + ", ".join(labeled_pixels(n, name) for name, n in sorted(few.items()))
            + ": label one more patch of " + " and one of ".join(sorted(few))
            + ", on the labeled slice or another one, and train again")
    if (selection or {}).get("grouping") == "none":
        codes["method_unvalidated"] = (
            f"the labels held no patch out, so the kept method "
            f"({selection.get('method', '?')}) was never checked against a labeled pixel it "
            f"had not seen: label at least two separate patches of each class")
    ordered = tuple(code for code in REASON_CODES if code in codes)
    return MaskVerdict(status="suspect" if ordered else "ok", reason_codes=ordered,
                       why=tuple(codes[c] for c in ordered), solid_fraction=float(solid_fraction),
                       reference_solid_fraction=float(reference_solid_fraction),
                       labels_solid_fraction=float(labels_solid_fraction))
