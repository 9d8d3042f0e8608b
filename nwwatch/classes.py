"""Class ids shared by label images, models and measurements."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BACKGROUND = 0
NANOWIRE = 1
DROPLET = 2
#: Pixels with this value in a training label are ignored by every loss and metric.
UNLABELED = 255

INSITU_CLASSES: tuple[str, ...] = ("background", "nanowire", "droplet")


def exchange_wire_and_droplet(labels: np.ndarray) -> np.ndarray:
    """In-situ labels (H, W) with the nanowire and droplet ids exchanged (a copy): another
    tool's class order (1 droplet, 2 nanowire) read in this one's, or back."""
    out = labels.copy()
    out[labels == NANOWIRE] = DROPLET
    out[labels == DROPLET] = NANOWIRE
    return out


def misplaced_insitu_class(class_names: Sequence[str]) -> str | None:
    """Why an in-situ class list contradicts the ids every in-situ reader uses (1 nanowire, 2
    droplet: the measurement, the runtime, the labelling tool), or None: a name holding "wire"
    while class 1's does not, or "drop" while class 2's does not (``["background", "droplet",
    "nanowire"]``). Other names (``["bg", "wire", "drop"]``) are the user's."""
    names = [name.lower() for name in class_names]
    for index, word in ((NANOWIRE, "wire"), (DROPLET, "drop")):
        if index < len(names) and word in names[index]:
            continue
        for k, name in enumerate(names):
            if word in name:
                return (f"classes {list(class_names)} name {class_names[k]!r} as class {k}, "
                        f"but in-situ labels are read as 0 background, 1 nanowire, 2 droplet "
                        f"whatever the names (the measurement, the runtime and the labelling "
                        f"tool)")
    return None


def insitu_model_problem(class_names: Sequence[str]) -> str | None:
    """Why an in-situ model, or the DATA folder it would be trained on, cannot be measured
    (fewer than three classes: no droplet class 2; more than three: the measurement reads
    those three only; or :func:`misplaced_insitu_class`), or None."""
    if len(class_names) <= DROPLET:
        return (f"classes {list(class_names)}: an in-situ model needs 0 background, "
                f"1 nanowire, 2 droplet (the contact angle is measured on class 2)")
    if len(class_names) > DROPLET + 1:
        # a fourth class's pixels would be neither wire nor droplet: measured as background
        # without a word, or refused frame by frame (measure stopped with a traceback)
        return (f"classes {list(class_names)}: an in-situ model has three classes, 0 "
                f"background, 1 nanowire, 2 droplet, which the contact angle is measured "
                f"on; label what else the frames show as 0, background")
    return misplaced_insitu_class(class_names)


#: Tomogram classes: 0 pore or vacuum, 1 solid.
PORE = 0
SOLID = 1
TOMOGRAM_CLASSES: tuple[str, ...] = ("pore", "solid")


#: A thin wire rim between droplet and background along more than this fraction of the
#: droplet's edge pixels (and on more than ``_RIM_MIN_PX`` pixels) is the rim that linear (or
#: area) interpolation leaves where 0 meets 2 in a resized label image: masks of the
#: benchmark's real geometries resized by 0.5-1.3 have 13-80 % (a few of those shrunk, at
#: 13-15 %, pass). Their exact, wiggled, blob, hole, gap and polygon labels have none beyond
#: the triple points; with a quarter of their boundary pixels flipped ("ragged"), up to 15 %
#: (one of 220 refused).
_RIM_MAX_FRACTION = 0.15
_RIM_MIN_PX = 8


def interpolated_rim_problem(labels: np.ndarray) -> str | None:
    """Why an in-situ label image (uint8 (H, W), ids 0, 1, 2, maybe 255) looks resized with
    interpolation, or None: wire pixels (1) with a droplet (2) and a background (0)
    4-neighbour along much of the droplet's edge, the values between 0 and 2 read as wire."""
    labels = np.asarray(labels)
    droplet, wire, background = labels == DROPLET, labels == NANOWIRE, labels == BACKGROUND

    def touches(mask):
        near = np.zeros_like(mask)
        near[1:] |= mask[:-1]
        near[:-1] |= mask[1:]
        near[:, 1:] |= mask[:, :-1]
        near[:, :-1] |= mask[:, 1:]
        return near

    # Only a thin rim counts: wire pixels left of the wire after a 3 x 3 opening are the
    # wire's own edge, which touches both where a ragged or hand-drawn interface leaves
    # background between wire and droplet.
    import cv2

    body = cv2.morphologyEx(wire.astype(np.uint8), cv2.MORPH_OPEN,
                            np.ones((3, 3), np.uint8)).astype(bool)
    rim_px = int(np.count_nonzero(wire & ~body & touches(droplet) & touches(background)))
    edge_px = int(np.count_nonzero(droplet & touches(~droplet)))
    if rim_px <= max(_RIM_MIN_PX, _RIM_MAX_FRACTION * edge_px):
        return None
    return (f"{rim_px} nanowire pixels (1) lie between droplet (2) and background (0), along "
            f"{100 * rim_px / max(edge_px, 1):.0f} % of the droplet's edge: a label image "
            f"resized with linear or area interpolation, or painted with antialiasing (a soft "
            f"brush, an antialiased selection filled with 2), whose values between 0 and 2 "
            f"read as wire; resize label images with nearest-neighbour interpolation "
            f"(cv2.INTER_NEAREST, Fiji's Size... with 'none'), paint class ids without "
            f"antialiasing (GIMP: the Pencil tool, selections with Antialiasing off) or redraw "
            f"them at the frame's size")


def nearest_labeled(labels: np.ndarray) -> np.ndarray:
    """``labels`` (H, W) uint8 with 255 pixels given the class of the nearest labeled pixel
    (Euclidean, pixel centres), so a human mask's unsure band around the boundaries does not
    become background and move the outline; all-255 labels become background."""
    unsure = labels == UNLABELED
    if not unsure.any() or unsure.all():
        return np.where(unsure, 0, labels).astype(np.uint8)
    from scipy.ndimage import distance_transform_edt

    _, (rows, cols) = distance_transform_edt(unsure, return_indices=True)
    return labels[rows, cols].astype(np.uint8)


#: Where the nearest-class fill of an unlabeled region puts a boundary between two classes
#: farther than this from any labeled pixel, the boundary must run on from where the two
#: classes meet on the region's edge (:func:`unsure_band_problem`); nearer, it may also lie
#: midway across a band between them, as drawn on each side (a band up to about twice as
#: wide). Our hand labels of the real crops leave bands reaching 3.0-8.5 px (119-368 px
#: frames).
UNSURE_BAND_MAX_REACH_PX = 16.0
#: Seen from such a boundary pixel, the nearest labeled pixels of its two classes lie within
#: this angle of each other where the boundary runs on from where the classes meet (the
#: bottom rows left out across wire and background: both at the wire's edge, a few px apart
#: seen from over 16 px, under 30 degrees), and farther apart where the fill chooses it: midway
#: across a band between the classes (180 degrees), or on the diagonal of a corner where one
#: class lies along one side of the region and the other along the next (90 degrees).
_JUNCTION_MAX_ANGLE_DEG = 60.0


#: A label page without a background (0) pixel whose unlabeled (255) pixels hold at least
#: this share of the frame's border reads as a mask saved with a white background: filled
#: with the nearest class, it has no background and no free surface. A background surrounds
#: the wire and the droplet; an unsure band lies between classes and touches the border only
#: where it crosses it, however much of the frame it covers (a close-up's band between a
#: droplet above and a wire below: 10 % of the frame, 5 % of its border).
WHITE_BACKGROUND_MIN_BORDER_SHARE = 0.5
#: ... or at least this share of the border where they also cover
#: :data:`WHITE_BACKGROUND_MIN_FRAME_SHARE` of the frame: a tight crop of a large droplet on a
#: white background (22 % of the frame, 44 % of its border), where a band would have to be
#: tens of pixels thick along two sides of the frame to reach as much.
WHITE_BACKGROUND_MIN_CROP_BORDER_SHARE = 0.2
WHITE_BACKGROUND_MIN_FRAME_SHARE = 0.1


def border_pixels(labels: np.ndarray) -> np.ndarray:
    """The values (N,) of the pixels on the frame's border of ``labels`` (H, W), each once."""
    labels = np.asarray(labels)
    if min(labels.shape) <= 2:
        return labels.ravel()
    return np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])


def white_background_problem(labels: np.ndarray) -> str | None:
    """Why in-situ labels (uint8 (H, W)) read as a mask whose background was saved as 255,
    the unlabeled value, or None: no pixel is 0 and 255 holds at least
    :data:`WHITE_BACKGROUND_MIN_BORDER_SHARE` of the frame's border, or at least
    :data:`WHITE_BACKGROUND_MIN_CROP_BORDER_SHARE` of it and
    :data:`WHITE_BACKGROUND_MIN_FRAME_SHARE` of the frame. Given the nearest
    class, such pixels leave the page without background, whose measurement no angle can
    come from."""
    labels = np.asarray(labels)
    if labels.size == 0 or (labels == BACKGROUND).any():
        return None
    frame_share = float(np.mean(labels == UNLABELED))
    border_share = float(np.mean(border_pixels(labels) == UNLABELED))
    if border_share < WHITE_BACKGROUND_MIN_BORDER_SHARE and (
            border_share < WHITE_BACKGROUND_MIN_CROP_BORDER_SHARE
            or frame_share < WHITE_BACKGROUND_MIN_FRAME_SHARE):
        return None
    return (f"{UNLABELED} covers {100 * frame_share:.0f} % of the frame ({100 * border_share:.0f} "
            f"% of its border) and no pixel is 0: is {UNLABELED} your background? Renumber it "
            f"to 0 ({UNLABELED} means unlabeled, given the class of the nearest labeled pixel; "
            f"docs/measurement.md, 'Masks from other tools')")


def missing_class(labels: np.ndarray) -> int | None:
    """NANOWIRE or DROPLET when in-situ labels (H, W) hold no pixel of it (the nanowire
    first), else None."""
    labels = np.asarray(labels)
    for class_id in (NANOWIRE, DROPLET):
        if not (labels == class_id).any():
            return class_id
    return None


def absent_class_hint(labels: np.ndarray) -> str:
    """For in-situ labels (uint8 (H, W)) holding 255 and no nanowire (1) or no droplet (2)
    pixel (:func:`missing_class`): "; no droplet (2) pixel: ..." saying to renumber 255 if
    it marks that class (a mask painted 0/1/255 or 0/255/2); else ""."""
    labels = np.asarray(labels)
    missing = missing_class(labels)
    if missing is None or not (labels == UNLABELED).any():
        return ""
    name = INSITU_CLASSES[missing]
    return (f"; no {name} ({missing}) pixel: if {UNLABELED} marks the {name}, renumber it to "
            f"{missing} ({UNLABELED} means unlabeled)")


class UnsureBandError(ValueError):
    """Labels whose unlabeled pixels cannot be given the nearest class: the reason of
    :func:`unsure_band_problem`."""


def fill_unsure_band(labels: np.ndarray) -> np.ndarray:
    """In-situ labels (uint8 (H, W), ids 0, 1, 2, maybe 255) with every unlabeled pixel given
    the class of the nearest labeled pixel (:func:`nearest_labeled`), as ``nwwatch measure``
    and ``nwwatch evaluate`` measure them. Raises :class:`UnsureBandError` with the reason of
    :func:`unsure_band_problem` where the labels do not say which class such pixels hold."""
    problem, filled = _filled_or_problem(labels, UNSURE_BAND_MAX_REACH_PX)
    if problem:
        raise UnsureBandError(problem)
    return filled


def unsure_band_problem(labels: np.ndarray,
                        max_reach_px: float = UNSURE_BAND_MAX_REACH_PX) -> str | None:
    """Why the unlabeled pixels (255) of in-situ labels (uint8 (H, W)) cannot be given the
    class of the nearest labeled pixel (:func:`nearest_labeled`) for a measurement, or None.

    A region of 255 that borders one class only (a scale bar left out in the background)
    takes that class whatever its size. Where the fill puts a boundary between two classes,
    it is the labels' up to ``max_reach_px`` from a labeled pixel (an unsure band's boundary
    midway), and beyond only where it runs on from where the two classes meet on the region's
    edge (:data:`_JUNCTION_MAX_ANGLE_DEG`): a strip along the frame's border left out across
    wire and background extends each class straight out to the border whatever its depth,
    while a wider band between two classes, or a corner with one class along one side and
    the other along the next, is the annotator's to say. Labels without a nanowire or droplet
    pixel (a 0/255 mask, or nothing labeled) have no band to fill, and labels without a 0
    pixel whose 255 holds half the frame's border have a white background
    (:func:`white_background_problem`), not a band. Where 255 is refused and the labels lack
    the nanowire or the droplet, the reason ends with :func:`absent_class_hint`."""
    return _filled_or_problem(labels, max_reach_px)[0]


def _filled_or_problem(labels: np.ndarray, max_reach_px: float
                       ) -> tuple[str | None, np.ndarray | None]:
    """(:func:`unsure_band_problem`'s reason, None), or (None, the labels filled as
    :func:`nearest_labeled` fills them), from one distance transform."""
    unsure = labels == UNLABELED
    if not unsure.any():
        return None, labels.astype(np.uint8)
    if unsure.all():
        return (f"every pixel is {UNLABELED} (unlabeled): nothing to measure; give every class "
                "its id (docs/measurement.md, 'Masks from other tools')"), None
    if not ((labels == NANOWIRE) | (labels == DROPLET)).any():
        return (f"found {UNLABELED} and no nanowire (1) or droplet (2) pixel: a 0/255 mask of "
                "one object, not class ids; give every class its id (docs/measurement.md, "
                "'Masks from other tools')"), None
    white = white_background_problem(labels)
    if white:
        return white, None
    from scipy.ndimage import distance_transform_edt

    reach, (near_rows, near_cols) = distance_transform_edt(unsure, return_indices=True)
    filled = labels[near_rows, near_cols].astype(np.uint8)
    if not (reach > max_reach_px).any():
        return None, filled
    rows, cols = np.indices(labels.shape)
    to_row, to_col = near_rows - rows, near_cols - cols  # to each pixel's nearest label
    cos_limit = np.cos(np.radians(_JUNCTION_MAX_ANGLE_DEG))
    worst: tuple[float, int, int, int, int] | None = None
    height, width = labels.shape
    # each pixel and its right, then its lower neighbour: a boundary of the fill between them
    for step_row, step_col in ((0, 1), (1, 0)):
        a = (slice(0, height - step_row), slice(0, width - step_col))
        b = (slice(step_row, height), slice(step_col, width))
        pair_reach = np.maximum(reach[a], reach[b])
        boundary = (filled[a] != filled[b]) & (pair_reach > max_reach_px)
        if not boundary.any():
            continue
        # seen from the first pixel: its nearest label, and its neighbour's (of the other
        # class), one step farther
        ar, ac = to_row[a][boundary], to_col[a][boundary]
        br, bc = to_row[b][boundary] + step_row, to_col[b][boundary] + step_col
        dot = (ar * br + ac * bc).astype(np.float64)
        chosen = dot < cos_limit * np.hypot(ar, ac) * np.hypot(br, bc)
        if not chosen.any():
            continue
        k = int(np.argmax(np.where(chosen, pair_reach[boundary], -1.0)))
        if worst is None or pair_reach[boundary][k] > worst[0]:
            at_rows, at_cols = np.nonzero(boundary)  # a's slices start at (0, 0)
            r, c = int(at_rows[k]), int(at_cols[k])
            worst = (float(pair_reach[boundary][k]), r, c, int(filled[r, c]),
                     int(filled[r + step_row, c + step_col]))
    if worst is None:
        return None, filled
    farthest, row, col, first, second = worst
    import cv2

    _, regions = cv2.connectedComponents(unsure.astype(np.uint8), connectivity=8)
    size_px = int(np.count_nonzero(regions == regions[row, col]))
    names = " and ".join(INSITU_CLASSES[k] for k in sorted((first, second)))
    return (f"an unlabeled ({UNLABELED}) region of {size_px} px about (row, col) ({row}, {col}) "
            f"lies between {names} and reaches {farthest:.1f} px from any labeled pixel there "
            f"(an unsure band between classes is given the nearest class up to "
            f"{max_reach_px:g} px; beyond, a region is only extended from where its classes "
            f"meet, as a strip along the frame's border is): give it its classes"
            f"{absent_class_hint(labels)}"), None
