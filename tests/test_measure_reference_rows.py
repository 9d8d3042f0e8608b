"""The measurement gives the rows it gave before its speed-ups: four model-labelled frames of the
benchmark's synthetic sets (crops, with their raw frames; tests/data/measure_reference.npz),
each measured four ways (model labels with the droplet probability, with and without the frame;
true labels with and without it), against the rows measurement 2.2.1 gave for them before
(tests/data/measure_reference_rows.json, written by ``bench/check_rows.py --write-test-data``
from the code before the speed-ups; in 2.2.2 only the reason texts of `angle_uncertain` rows
changed: they name the largest term of sigma; in 2.2.3 only the `confidence` column, which
these rows do not hold: nwwatch.segment.confidence; 2.2.4 leaves the side of a wire/droplet
background gap out of the free surface, which none of them has; 2.2.5 adds half the flat-
versus-rim difference to the sigma of an elliptical facet read with the frame: the one such
row, eval_new/1/truth+image, took its new uncertainty; 2.2.6 adds the `cap_excess_px` column
and its term of sigma, 0 on all sixteen rows, so only the column was added to the stored rows;
2.2.7 the `triple_depth_px` column and its term: the two seed304/2 model rows, whose triple
points lie 2.8 px inside the wire and droplet, took their new uncertainty; 2.2.8 reads no wire
axis from a mask whose long direction runs more than 45 deg from the facet normal: the
eval_new/1 and seed304/2 model rows (axes 82.5 and 47.9 deg from it) became `not_measured`,
without axis, width and inclination, the seed304/2 rows' reason naming why; angles and sigma
unchanged; 2.2.9 adds both sides of a thin background gap along part of the wire/droplet
interface to its points: the eval_new/1 truth rows, whose labels leave one background pixel
between wire and droplet at a corner, moved by 5e-5 deg, their facet line by 0.002 deg and the
wire width by 0.7 px; 2.2.10 pairs a droplet with a wire across a band wider than 4 px where
none lies closer, which none of them has: unchanged; 2.2.11 floors the covariance of a binary
outline's circle at its pixel quantisation: the four true-label rows' sigma rose by 1e-4 to
5e-4 deg; 2.2.12 keeps the side angles, triple points, cap height and volume on
`angle_uncertain` rows: the five such rows took them, null before, and nothing else changed;
2.2.13 measures a frame the same however it is turned or mirrored (neighbourhoods symmetric in
rows and columns, the outline's correlation read along its arc): the eval_a/4 and video_new/0
rows moved by up to 0.03 deg, one fewer outline point, sigma by up to 3 %; no status changed;
it gives no wire width or axis where the side edges are not the wire's: eval_new/1's true rows
lost a width of 221.6 px; 2.2.14 gives no side angle at a triple point outside the image: the
four seed304/2 rows, whose left one lies 17.5-17.8 px above the crop, lost their left angle;
and charges the refined facet line's sigma with the bias a droplet-side ramp gives its
centroid: the four refined rows' sigma rose by 1-41 %, the two video_new/0 rows (1.37 and
1.50 deg) became `angle_uncertain`); 2.2.15 charges that ramp the bias of the centroid
iterated to its fixed point (the first iteration's before): the same four rows' sigma rose by
0.2-12 %, no status changed); 2.2.16 gives refused rows a point of the facet line (these
rows unchanged); 2.2.17 draws the facet refinement's bootstrap resamples in an order the
frame's negative shares: the refined rows' sigma moved by up to 0.8 %, and the eval_a/4
true-label row's reason names its term's new size (2.7 deg instead of 2.8); 2.2.18 leaves
the interface's points out of the wire's side-edge fits (these rows unchanged); 2.2.19 prints
an `angle_uncertain` reason's sigma with two decimals (the seven such rows' reasons) and counts
the droplets of a frame refused before its pair (none of these rows), and adds each side
angle's 1-sigma (two columns; every other value bit-identical); 2.2.20 changes only what
reaches the measurement from a file (frames larger than 512^2 normalised from an even grid,
a TIFF's largest series, per-section .mdoc pixel sizes, non-square pixels without a unit
refused): these rows unchanged; 2.2.21 charges a binary droplet outline's straight runs inside
its circle (a polygon-drawn droplet) in sigma: the four true-label rows' sigma rose by 0.01-3 %,
nothing else changed, and calls a droplet cut only where its free surface reaches the border
(none of these rows is cut); 2.2.22 leaves a side angle out where the frame cuts that side's
outline next to its contact, refuses a droplet label through the wire
(`interface_not_line`), gives a frame's infinite pixels the nearest data pixel's grey as
NaN pixels get (these rows unchanged), and fits each straight stretch of a binary droplet
outline's dip against the same stretch of the fitted circle's own pixel-centre mask (its
vertices found also between the window's peaks): the six true-label rows' sigma moved by -3
to +0.02 %, nothing else changed.
bench/check_rows.py compares a larger corpus (about 1900 rows)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.check_rows import compare, load_test_inputs, measure_test_frames
from nwwatch.measure import MEASUREMENT_VERSION

DATA = Path(__file__).parent / "data"


def test_rows_equal_the_stored_reference_rows():
    assert MEASUREMENT_VERSION == "2.2.22"  # new results come with a new version and new rows
    reference = json.loads((DATA / "measure_reference_rows.json").read_text())
    rows = measure_test_frames(load_test_inputs(DATA / "measure_reference.npz"))
    stats, bad = compare({"frames": {"rows": reference}}, {"frames": {"rows": rows}}, 1e-9)
    assert not bad, "\n".join(bad)
    assert stats["rows"] == 16
    # What the frames exercise: the facet line moved onto the frame's step, kept on the
    # labels for a reason, an elliptical facet; valid and refused angles.
    edges = {r["facet_edge"] for r in reference}
    assert {"refined", "not_a_step", "elliptical", "labels"} <= edges
    assert {r["reason_code"] for r in reference} >= {"ok", "angle_uncertain"}
