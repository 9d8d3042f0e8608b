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
    "nanowire"]``). Other names (``["bg", "wire", "drop"]``, a fourth ``"wire tip"``) are the
    user's."""
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
    (fewer than three classes: no droplet class 2; or :func:`misplaced_insitu_class`), or
    None."""
    if len(class_names) <= DROPLET:
        return (f"classes {list(class_names)}: an in-situ model needs 0 background, "
                f"1 nanowire, 2 droplet (the contact angle is measured on class 2)")
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
            f"resized with linear or area interpolation, whose values between 0 and 2 read as "
            f"wire; resize label images with nearest-neighbour interpolation (cv2.INTER_NEAREST,"
            f" Fiji's Size... with 'none') or redraw them at the frame's size")


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


#: An unlabeled region that borders two or more classes is given to the nearest class only
#: where none of its pixels lies farther than this from a labeled pixel (a band up to about
#: twice as wide): the nearest class then places the boundary midway, as drawn on each side.
#: Our hand labels of the real crops leave bands reaching 3.0-8.5 px (119-368 px frames).
UNSURE_BAND_MAX_REACH_PX = 16.0


def unsure_band_problem(labels: np.ndarray,
                        max_reach_px: float = UNSURE_BAND_MAX_REACH_PX) -> str | None:
    """Why the unlabeled pixels (255) of in-situ labels (uint8 (H, W)) cannot be given the
    class of the nearest labeled pixel (:func:`nearest_labeled`) for a measurement, or None.

    A region of 255 that borders one class only (a scale bar left out in the background)
    takes that class whatever its size. A region that borders several is an unsure band
    between them: at most ``max_reach_px`` from a labeled pixel everywhere, else which class
    it holds is the annotator's to say. Labels without a nanowire or droplet pixel (a 0/255
    mask, or nothing labeled) have no band to fill."""
    unsure = labels == UNLABELED
    if not unsure.any():
        return None
    if unsure.all():
        return (f"every pixel is {UNLABELED} (unlabeled): nothing to measure; give every class "
                "its id (docs/measurement.md, 'Masks from other tools')")
    if not ((labels == NANOWIRE) | (labels == DROPLET)).any():
        return (f"found {UNLABELED} and no nanowire (1) or droplet (2) pixel: a 0/255 mask of "
                "one object, not class ids; give every class its id (docs/measurement.md, "
                "'Masks from other tools')")
    import cv2
    from scipy.ndimage import distance_transform_edt

    count, regions = cv2.connectedComponents(unsure.astype(np.uint8), connectivity=8)
    reach = distance_transform_edt(unsure)
    farthest = np.zeros(count, np.float64)
    np.maximum.at(farthest, regions[unsure], reach[unsure])
    # the classes each region touches (8-neighbours): one bit per class
    touched = np.zeros(count, np.int64)
    kernel = np.ones((3, 3), np.uint8)
    for bit, cls in enumerate((BACKGROUND, NANOWIRE, DROPLET)):
        near = cv2.dilate((labels == cls).astype(np.uint8), kernel).astype(bool) & unsure
        touched[np.unique(regions[near])] |= 1 << bit
    several = np.array([bin(int(t)).count("1") > 1 for t in touched])
    several[0] = False  # label 0 of connectedComponents: the labeled pixels
    wide = np.flatnonzero(several & (farthest > max_reach_px))
    if wide.size == 0:
        return None
    worst = wide[np.argmax(farthest[wide])]
    rows, cols = np.nonzero(regions == worst)
    names = [name for bit, name in enumerate(INSITU_CLASSES) if touched[worst] >> bit & 1]
    return (f"an unlabeled ({UNLABELED}) region of {rows.size} px about (row, col) "
            f"({int(rows.mean())}, {int(cols.mean())}) borders {' and '.join(names)} and "
            f"reaches {farthest[worst]:.1f} px from any labeled pixel (an unsure band is given "
            f"the nearest class up to {max_reach_px:g} px): give it its classes")
