"""The lattice limit behind the textbook caps' worst frames (bench/bench_ideal_tail.py): a cap
whose facet runs along a pixel column can be moved a quarter pixel along its normal, with the
same droplet circle, without changing a single label, while its angle moves by ~0.5 deg."""

import numpy as np

from bench.bench_contact_angle import render
from bench.bench_ideal_tail import lattice_twin
from nwwatch.synth.geometry import WireSpec

# Frame a = 30 px, index 3 of `bench_contact_angle --seed 2` (its worst textbook cap).
WIRE = WireSpec(facet_row=452.7511919505199, facet_col=250.36706466166464,
                axis_deg=-89.46591610412138, radius_px=30.0, theta_deg=149.0338032751189)


def test_quarter_pixel_twin_has_the_same_labels_and_another_angle() -> None:
    labels = render(WIRE)[0]
    twin, theta = lattice_twin(WIRE, -0.25)
    assert abs(theta - WIRE.theta_deg) > 0.4
    assert np.array_equal(render(twin)[0], labels)


def test_a_twin_beyond_the_pixel_band_has_other_labels() -> None:
    twin, _ = lattice_twin(WIRE, 0.8)
    assert not np.array_equal(render(twin)[0], render(WIRE)[0])
