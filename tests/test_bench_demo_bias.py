"""The demo-bias benchmark's recombinations (bench/bench_demo_bias.py): a circle from one
measurement on another's facet line, and label maps with one map's interface and the other's
outline, recover what was put into a cap whose interface is drawn into the wire."""

from __future__ import annotations

import math

import numpy as np
from ideal_caps import render_ideal_cap

from bench.bench_demo_bias import Geometry, hybrid
from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import measure_contact_angle

SHIFT_PX = 3.0


def _cap_and_shifted():
    cap = render_ideal_cap((256, 256), 110.0, 40.0, 33.0, (140.3, 120.6))
    true = cap.labels
    g = Geometry.of(measure_contact_angle(true))
    rows, cols = np.indices(true.shape, dtype=float)
    dist = (rows - g.foot[0]) * g.normal[0] + (cols - g.foot[1]) * g.normal[1]
    along = -(rows - g.foot[0]) * g.normal[1] + (cols - g.foot[1]) * g.normal[0]
    # The interface drawn SHIFT_PX into the wire, the droplet's outline left as it is.
    into_wire = (true == NANOWIRE) & (dist > -SHIFT_PX) & (np.abs(along) < 0.9 * g.half_chord())
    model = np.where(into_wire, DROPLET, true).astype(np.uint8)
    return cap, true, model


def test_geometry_recombined_with_itself_gives_its_own_angle():
    cap, true, _ = _cap_and_shifted()
    r = measure_contact_angle(true)
    g = Geometry.of(r)
    assert math.isclose(g.angle_with(g), r.contact_angle_deg, abs_tol=1e-9)
    assert abs(r.contact_angle_deg - cap.contact_angle_deg) < 0.3


def test_the_shifted_interface_carries_the_whole_error():
    cap, true, model = _cap_and_shifted()
    rt, rm = measure_contact_angle(true), measure_contact_angle(model)
    gt, gm = Geometry.of(rt), Geometry.of(rm)
    expected = math.degrees(SHIFT_PX / gt.half_chord())  # d / a rad, biased high
    assert abs((rm.contact_angle_deg - rt.contact_angle_deg) - expected) < 0.5
    assert abs(gm.angle_with(gt) - rt.contact_angle_deg) < 0.3  # model circle, true line
    assert abs(gt.angle_with(gm) - rm.contact_angle_deg) < 0.5  # true circle, model line
    # The label maps: the model's outline with the true interface measures the truth.
    fixed = measure_contact_angle(hybrid(model, true))
    assert abs(fixed.contact_angle_deg - rt.contact_angle_deg) < 0.3
    moved = measure_contact_angle(hybrid(true, model))
    assert abs(moved.contact_angle_deg - rm.contact_angle_deg) < 0.5


def test_the_facet_readings_are_recorded_for_every_measurement():
    # facet_shape moved from contact_angle to facet: the bench's recorder patched a name
    # that no longer existed, and `python -m bench.bench_demo_bias` failed on its first frame
    from bench.bench_demo_bias import facet_readings

    cap = render_ideal_cap((160, 160), 110.0, 30.0, 90.0, (90.0, 80.0))
    record: list[dict] = []
    with facet_readings(record):
        measure_contact_angle(cap.labels)
    assert len(record) == 1 and record[0]["tilt_deg"] == 0
    measure_contact_angle(cap.labels)
    assert len(record) == 1  # restored afterwards
