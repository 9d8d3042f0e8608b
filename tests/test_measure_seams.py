"""A failure on a label image resized with interpolation is named as such
(``labels_interpolated``); exact and wiggled labels never are, and a measurement that
succeeds is left as it is."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from ideal_caps import render_ideal_cap

from nwwatch.measure import measure_contact_angle
from nwwatch.measure.seams import MIN_SEAM_SHARE, interpolation_seam_share

SHAPE = (256, 256)


def _cap(theta: float, axis: float) -> np.ndarray:
    return render_ideal_cap(SHAPE, theta, 40.0, axis, (150.3, 127.6)).labels


def _resized(labels: np.ndarray, size: int, how: int) -> np.ndarray:
    small = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, SHAPE, interpolation=how)


@pytest.mark.parametrize(("theta", "axis"), [(95.0, 90.0), (130.0, 30.0), (115.0, -120.0)])
def test_exact_labels_are_not_read_as_interpolated(theta, axis):
    assert interpolation_seam_share(_cap(theta, axis)) < 0.05


@pytest.mark.parametrize(("theta", "axis"), [(95.0, 90.0), (130.0, 30.0), (115.0, -120.0)])
def test_a_failure_on_labels_resized_twofold_bilinearly_names_the_resize(theta, axis):
    labels = _resized(_cap(theta, axis), 128, cv2.INTER_LINEAR)
    assert interpolation_seam_share(labels) >= MIN_SEAM_SHARE
    r = measure_contact_angle(labels)
    assert r.status == "fit_failed"
    assert r.reason_code == "labels_interpolated"
    assert "resize label images with nearest neighbour" in r.reason
    assert "measured as drawn: " in r.reason  # the failure's own reason follows


def test_a_measurement_that_succeeds_is_left_as_it_is():
    labels = _resized(_cap(115.0, 90.0), 192, cv2.INTER_LINEAR)
    r = measure_contact_angle(labels)
    assert r.angle_valid, r.reason
    assert r.reason_code == "ok"


def test_failures_a_ring_cannot_cause_keep_their_code():
    labels = _resized(_cap(115.0, 90.0), 128, cv2.INTER_LINEAR)
    labels[labels == 1] = 0  # no wire left at all
    assert measure_contact_angle(labels).reason_code == "no_wire"
