"""bench_finetune's looks: the tool's geometry labels their frames exactly, and the moderate
look renders the microscope it describes."""

from __future__ import annotations

import numpy as np
import pytest
from label_helpers import render, truth_geometry

from bench.bench_finetune import LOOKS, MODERATE_LOOK, SEED
from nwwatch.label.raster import rasterize


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_tool_geometry_labels_the_look_exactly(look):
    params = LOOKS[look][0](SEED, 1, 512)
    image, labels, truth = render(params, seed=1)
    assert np.array_equal(rasterize(truth_geometry(params)), labels)
    assert image.dtype == np.uint16 and 0 < truth["theta_apparent_deg"] < 180


def test_moderate_look_draws_within_its_ranges():
    m = MODERATE_LOOK
    for k in (0, 1000):
        params = LOOKS["moderate"][0](SEED, k, 512)
        _, _, truth = render(params, seed=k)
        assert m["dose_e_per_px"][0] <= params.dose_e_per_px <= m["dose_e_per_px"][1]
        assert m["droplet_radius_px"][0] - 1e-6 <= truth["R_px"] <= m["droplet_radius_px"][1]
        assert (params.gain_adu_per_e, params.offset_adu, params.appearance.gamma) == (
            m["gain_adu_per_e"], m["offset_adu"], m["gamma"])
