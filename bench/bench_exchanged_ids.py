"""How often ``nwwatch measure``'s note on exchanged class ids would be wrong or missing.

``measure`` measures a refused label page again with the nanowire and droplet ids exchanged
(:func:`nwwatch.classes.exchange_wire_and_droplet`) and notes the angle when that one is
valid. On the benchmark's real-geometry labels
(:func:`bench.bench_contact_angle.real_geometry_frames`: exact, the six degradations, and
polygon labels at 1.5 px of vertex jitter, a vertex every 10 px) it counts, per label kind:

* wrong notes: labels refused in the right order that give an angle exchanged;
* exchanged labels given an angle: the labels in the other order (as another tool would
  number them) that are not refused at all, so that no note is printed and the row carries
  an angle of the wrong object.

and, for the note on a background that is not 0
(:func:`nwwatch.measure.exchanged.background_not_zero`):

* wrong background notes: labels refused in the right order that read as another background;
* the four orders with the background not 0 (as an image editor's indexed colours may
  number them): how many are noted (a note needs a renumbering that gives an angle), how
  many of those with the right angle (one of the two where both orders of the wire and
  droplet ids give one), how many with both orders, and how many are given an angle (no
  note; the row an angle of the wrong object).

Usage::

    python -m bench.bench_exchanged_ids --per-geometry 8 --seed 11 \\
        --json bench/results/exchanged_ids.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from bench.bench_contact_angle import DEGRADATIONS, degrade, real_geometry_frames
from bench.bench_polygon_labels import polygon_labels
from nwwatch.classes import exchange_wire_and_droplet
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.exchanged import background_not_zero

#: the orders that number the background 1 or 2: class id -> the id it is drawn with
BACKGROUND_ORDERS = ((1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def run(per_geometry: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels_total, refused, wrong_note = Counter(), Counter(), Counter()
    exchanged_valid = Counter()
    wrong_background, orders, noted, noted_right, noted_both, orders_valid = (
        Counter() for _ in range(6))
    for _, wire, labels, _ in real_geometry_frames(rng, per_geometry):
        variants = [("exact", labels)]
        variants += [(kind, degrade(labels, wire, kind, rng)) for kind in DEGRADATIONS]
        variants.append(("polygon 1.5 px", polygon_labels(labels, 10.0, 1.5, rng)))
        for kind, drawn in variants:
            labels_total[kind] += 1
            right = measure_contact_angle(drawn)
            exchanged = measure_contact_angle(exchange_wire_and_droplet(drawn))
            exchanged_valid[kind] += int(exchanged.angle_valid)
            if not right.angle_valid:
                refused[kind] += 1
                wrong_note[kind] += int(exchanged.angle_valid)
                wrong_background[kind] += int(background_not_zero(drawn, right) is not None)
            for order in BACKGROUND_ORDERS:
                renumbered = np.asarray(order, np.uint8)[drawn]
                found = measure_contact_angle(renumbered)
                orders[kind] += 1
                orders_valid[kind] += int(found.angle_valid)
                other = background_not_zero(renumbered, found)
                noted[kind] += int(other is not None)
                angles = () if other is None else (other.angle_deg, other.other_angle_deg)
                noted_right[kind] += int(right.angle_valid and any(
                    a is not None and abs(a - right.contact_angle_deg) < 1e-9 for a in angles))
                noted_both[kind] += int(other is not None and other.other_angle_deg is not None)
    return {"per_geometry": per_geometry, "seed": seed,
            "kinds": {kind: {"labels": n, "refused_in_right_order": refused[kind],
                             "wrong_notes": wrong_note[kind],
                             "exchanged_labels_given_an_angle": exchanged_valid[kind],
                             "wrong_background_notes": wrong_background[kind],
                             "background_not_0": orders[kind],
                             "background_not_0_noted": noted[kind],
                             "background_not_0_noted_with_the_angle": noted_right[kind],
                             "background_not_0_noted_with_both_orders": noted_both[kind],
                             "background_not_0_given_an_angle": orders_valid[kind]}
                      for kind, n in labels_total.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-geometry", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    record = run(args.per_geometry, args.seed)
    record["command"] = " ".join(["python -m bench.bench_exchanged_ids", *argv])
    for kind, k in record["kinds"].items():
        print(f"{kind}: {k['labels']} labels, {k['refused_in_right_order']} refused, "
              f"{k['wrong_notes']} wrong notes; exchanged, {k['exchanged_labels_given_an_angle']}"
              f" given an angle; {k['wrong_background_notes']} wrong background notes; "
              f"background not 0: {k['background_not_0']}, {k['background_not_0_noted']} noted "
              f"({k['background_not_0_noted_with_the_angle']} with the angle, "
              f"{k['background_not_0_noted_with_both_orders']} with both orders), "
              f"{k['background_not_0_given_an_angle']} given an angle")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
