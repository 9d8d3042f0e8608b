"""Class ids shared by label images, models and measurements."""

from __future__ import annotations

from collections.abc import Sequence

BACKGROUND = 0
NANOWIRE = 1
DROPLET = 2
#: Pixels with this value in a training label are ignored by every loss and metric.
UNLABELED = 255

INSITU_CLASSES: tuple[str, ...] = ("background", "nanowire", "droplet")


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
