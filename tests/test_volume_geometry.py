"""The numpy-only geometry behind the volume metrics, checked against scipy and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure

from nwwatch.volume.edt import distance_transform_edt, distance_transform_edt_sq
from nwwatch.volume.labeling import label_volume, remove_small_components
from nwwatch.volume.surface import area_table, surface_area


def _blobs(shape, sigma, threshold, seed):
    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return field > threshold * field.std()


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize(
    "shape, sampling",
    [((20, 30, 25), None), ((17, 23, 31), (2.0, 1.0, 1.0)), ((10, 12, 14), (1.0, 1.5, 0.7)),
     ((1, 9, 7), None), ((60, 8, 8), None)],
)
def test_edt_matches_scipy(shape, sampling):
    fg = _blobs(shape, 2.0, 0.1, seed=sum(shape))
    fg[:, :2] = True  # long runs without features: exercises the envelope pass
    expected = ndi.distance_transform_edt(fg, sampling=sampling)
    np.testing.assert_allclose(distance_transform_edt(fg, sampling), expected, atol=1e-9)


def test_edt_long_reach_along_z_uses_envelope_and_stays_exact():
    fg = np.ones((80, 6, 6), dtype=bool)
    fg[0, 0, 0] = False
    fg[79, 5, 5] = False
    np.testing.assert_allclose(distance_transform_edt(fg), ndi.distance_transform_edt(fg))


def test_edt_bounded_is_exact_below_the_bound_and_inf_above():
    fg = _blobs((40, 40, 40), 3.0, -0.5, seed=3)
    expected = ndi.distance_transform_edt(fg)
    got = np.sqrt(distance_transform_edt_sq(fg, max_distance=3.0))
    near = expected <= 3.0
    np.testing.assert_allclose(got[near], expected[near], atol=1e-9)
    assert np.isinf(got[~near]).all()


def _peak_bytes_per_voxel(fn, shape) -> float:
    """Peak bytes numpy allocated while ``fn()`` ran, per voxel of ``shape`` (tracemalloc
    sees numpy's buffers, scipy's included)."""
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak / float(np.prod(shape))


def test_edt_holds_the_feature_transform_and_the_result_not_scipys_temporaries(monkeypatch):
    # scipy's distances go through four arrays the size of the volume (its feature
    # transform, the index grid, their difference, float64 per axis): ~60 bytes a voxel,
    # which made the volume metrics of a 144 MiB float32 tomogram peak at 3.4 GB.
    from nwwatch.volume import edt

    fg = _blobs((48, 64, 64), 2.0, 0.1, seed=5)
    monkeypatch.setattr(edt, "_SLAB_VOXELS", 64 * 64 * 4)  # 12 slabs of 4 slices
    np.testing.assert_allclose(np.sqrt(distance_transform_edt_sq(fg)),
                               ndi.distance_transform_edt(fg), atol=1e-9)
    per_voxel = _peak_bytes_per_voxel(lambda: distance_transform_edt_sq(fg), fg.shape)
    assert per_voxel <= 26.0  # int32 feature transform (12) + float64 result (8) + slab: 23.3


def test_edt_without_background_is_inf():
    assert np.isinf(distance_transform_edt(np.ones((3, 4, 5), dtype=bool))).all()
    assert not distance_transform_edt(np.zeros((3, 4, 5), dtype=bool)).any()


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("sigma, threshold", [(1.0, 0.3), (2.0, 0.1), (0.5, 0.8)])
def test_labels_match_scipy(connectivity, sigma, threshold):
    mask = _blobs((30, 40, 50), sigma, threshold, seed=7)
    structure = ndi.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    expected, count = ndi.label(mask, structure)
    labels, n = label_volume(mask, connectivity)
    assert n == count
    assert _same_partition(labels, expected)


def test_labels_join_only_through_the_chosen_neighbourhood():
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner-touching voxels
    assert label_volume(mask, 6)[1] == 2
    assert label_volume(mask, 26)[1] == 1
    with pytest.raises(ValueError, match="connectivity"):
        label_volume(mask, 18)


def test_remove_small_components_drops_exactly_the_small_ones():
    mask = np.zeros((20, 20, 20), dtype=bool)
    mask[2:8, 2:8, 2:8] = True  # 216 voxels
    mask[15, 15, 15] = True  # a speck
    mask[12:14, 2:4, 2:4] = True  # 8 voxels
    kept = remove_small_components(mask, 8)
    assert kept[2:8, 2:8, 2:8].all() and kept[12:14, 2:4, 2:4].all() and not kept[15, 15, 15]
    assert kept.sum() == 216 + 8


def _skimage_area(mask, spacing=(1.0, 1.0, 1.0)):
    verts, faces, _, _ = measure.marching_cubes(mask.astype(np.float32), 0.5, spacing=spacing)
    return measure.mesh_surface_area(verts, faces)


def test_area_table_matches_skimage_cube_by_cube_where_unambiguous():
    table = area_table()
    agree = 0
    for config in range(1, 255):
        cube = np.zeros((2, 2, 2), dtype=np.float32)
        for corner in range(8):
            if (config >> corner) & 1:
                cube[(corner >> 2) & 1, (corner >> 1) & 1, corner & 1] = 1.0
        agree += abs(_skimage_area(cube) - table[config]) < 1e-5
    # Only the configurations where Lewiner's method adds a vertex inside the cube differ.
    assert agree >= 254 - 56


def test_sphere_surface_matches_skimage_and_analytic():
    r = 20
    z, y, x = np.ogrid[-30:31, -30:31, -30:31]
    ball = z * z + y * y + x * x <= r * r
    area = surface_area(ball)
    assert area == pytest.approx(_skimage_area(ball), rel=1e-6)
    # Marching cubes on a binary mask overestimates a sphere's area by ~8 %.
    assert area == pytest.approx(4 * np.pi * r * r, rel=0.10)
    assert area > 4 * np.pi * r * r


@pytest.mark.parametrize("sigma, spacing", [(2.5, (1.0, 1.0, 1.0)), (2.5, (2.0, 1.0, 0.5)),
                                            (1.0, (1.0, 1.0, 1.0))])
def test_random_surface_close_to_skimage(sigma, spacing):
    mask = _blobs((40, 44, 48), sigma, 0.2, seed=11)
    tolerance = 0.005 if sigma > 2 else 0.02  # rough masks have more ambiguous cubes
    assert surface_area(mask, spacing) == pytest.approx(_skimage_area(mask, spacing),
                                                        rel=tolerance)


def test_flat_interface_area_is_exact():
    slab = np.zeros((10, 12, 14), dtype=bool)
    slab[:4] = True
    assert surface_area(slab) == pytest.approx(11 * 13)
    assert surface_area(slab, (1.0, 2.0, 3.0)) == pytest.approx(11 * 13 * 6)
