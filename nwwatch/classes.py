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
    at another index than 1, or "drop" at another index than 2 (``["background", "droplet",
    "nanowire"]``). Other names (``["bg", "wire", "drop"]``) are the user's."""
    for index, word in ((NANOWIRE, "wire"), (DROPLET, "drop")):
        for k, name in enumerate(class_names):
            if word in name.lower() and k != index:
                return (f"classes {list(class_names)} name {name!r} as class {k}, but in-situ "
                        f"labels are read as 0 background, 1 nanowire, 2 droplet whatever "
                        f"the names (the measurement, the runtime and the labelling tool)")
    return None


def insitu_model_problem(class_names: Sequence[str]) -> str | None:
    """Why an in-situ model cannot be measured (fewer than three classes: no droplet class 2;
    or :func:`misplaced_insitu_class`), or None."""
    if len(class_names) <= DROPLET:
        return (f"an in-situ model needs the classes 0 background, 1 nanowire, 2 droplet; "
                f"this one has {len(class_names)} ({list(class_names)}), and the contact angle "
                f"is measured on class 2")
    return misplaced_insitu_class(class_names)

#: Tomogram classes: 0 pore or vacuum, 1 solid.
PORE = 0
SOLID = 1
TOMOGRAM_CLASSES: tuple[str, ...] = ("pore", "solid")
