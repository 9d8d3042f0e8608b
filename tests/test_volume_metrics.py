"""volume_metrics on shapes with known answers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pyarrow as pa
import pytest

from nwwatch.volume import (
    VOLUME_METRIC_FIELDS,
    VolumeMetrics,
    grain_envelope,
    volume_metrics,
)


def _ball(shape, centre, radius):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_row_keys_are_the_fields_and_fit_the_schema():
    mask = np.zeros((12, 12, 12), dtype=np.uint8)
    mask[2:10, 2:10, 2:10] = 1
    row = volume_metrics(mask).as_row()
    assert list(row) == [f.name for f in VOLUME_METRIC_FIELDS]
    assert [f.name for f in VOLUME_METRIC_FIELDS] == list(VolumeMetrics.__dataclass_fields__)
    table = pa.Table.from_pylist([row], schema=pa.schema(VOLUME_METRIC_FIELDS))
    assert table.num_rows == 1
    assert row["voxel_size_x_nm"] is None and row["surface_area_nm2"] is None


def test_solid_sphere_volume_area_and_no_pores():
    r = 18
    mask = _ball((48, 48, 48), (24, 24, 24), r).astype(np.uint8)
    m = volume_metrics(mask, voxel_size_nm=2.0)
    assert m.solid_volume_px3 == pytest.approx(4 / 3 * math.pi * r**3, rel=0.01)
    assert m.solid_volume_nm3 == pytest.approx(m.solid_volume_px3 * 8.0)
    # marching cubes on a binary sphere: +6..9 % over 4 pi r^2
    assert 1.0 < m.surface_area_px2 / (4 * math.pi * r * r) < 1.10
    assert m.surface_area_nm2 == pytest.approx(m.surface_area_px2 * 4.0)
    assert m.specific_surface_area_per_px == pytest.approx(m.surface_area_px2 / m.solid_volume_px3)
    assert m.specific_surface_area_per_nm == pytest.approx(m.specific_surface_area_per_px / 2.0)
    assert m.pore_count == 0 and m.porosity_envelope == 0.0
    assert m.envelope_volume_px3 == m.solid_volume_px3
    assert math.isnan(m.pore_diameter_mean_px)
    assert m.solid_fraction == pytest.approx(mask.mean())
    assert m.porosity_volume == pytest.approx(1 - mask.mean())


def test_slab_porosity_ignores_the_vacuum_around_the_grain():
    # A grain (block) in vacuum, cut by 3 slits 2 voxels wide that do not reach its faces.
    mask = np.zeros((40, 40, 40), dtype=np.uint8)
    mask[5:35, 5:35, 5:35] = 1
    for z0 in (10, 18, 26):
        mask[z0:z0 + 2, 8:32, 8:32] = 0
    m = volume_metrics(mask)
    pore = 3 * 2 * 24 * 24
    assert m.envelope_volume_px3 == 30**3
    assert m.pore_volume_px3 == pore
    assert m.porosity_envelope == pytest.approx(pore / 30**3)
    assert m.porosity_volume == pytest.approx(1 - (30**3 - pore) / 40**3)
    assert m.pore_count == 3
    # A slit 2 voxels wide: both middle planes are 1 voxel from solid -> diameter 2.
    assert m.pore_diameter_median_px == pytest.approx(2.0)


def test_open_slits_count_as_pores_when_the_closing_bridges_them():
    # Slits that cut through the grain's faces: the closing (radius 10) seals their mouths.
    mask = np.zeros((50, 50, 50), dtype=np.uint8)
    mask[5:45, 5:45, 5:45] = 1
    mask[20:23, 5:45, 15:35] = 0  # open at y = 5 and y = 44
    m = volume_metrics(mask)
    # Digital closing: the slit's two mouth layers (on the faces) may stay outside.
    mouths = 2 * 3 * 20
    assert 40**3 - mouths <= m.envelope_volume_px3 <= 40**3
    assert m.pore_volume_px3 == m.envelope_volume_px3 - (40**3 - 3 * 40 * 20)
    assert m.pore_volume_px3 >= 3 * 38 * 20
    assert m.pore_count == 1
    # Without closing the slit is vacuum: no pore at all.
    assert volume_metrics(mask, envelope_radius_px=0).pore_count == 0


@pytest.mark.parametrize("k", [1, 4, 7])
def test_counts_k_holes_and_their_diameters(k):
    mask = np.ones((30, 30, 30 * k), dtype=np.uint8)
    radius = 5
    for i in range(k):
        mask[_ball(mask.shape, (15, 15, 15 + 30 * i), radius)] = 0
    m = volume_metrics(mask, voxel_size_nm=(1.0, 1.0, 1.0))
    assert m.pore_count == k
    assert m.largest_pore_fraction == pytest.approx(1.0 / k)
    # one medial voxel per ball: 2 x distance to the nearest solid centre, 2R .. 2R + 2/R
    assert 2 * radius <= m.pore_diameter_median_px <= 2 * radius + 2.0 / radius + 1e-9
    assert m.pore_diameter_p10_px == pytest.approx(m.pore_diameter_p90_px)
    assert m.pore_diameter_mean_nm == pytest.approx(m.pore_diameter_mean_px)


def test_anisotropic_voxels_scale_lengths_per_axis():
    mask = np.ones((20, 40, 40), dtype=np.uint8)
    mask[8:12, 10:30, 10:30] = 0  # a flat pore 4 voxels thick along z
    iso = volume_metrics(mask, voxel_size_nm=1.0)
    aniso = volume_metrics(mask, voxel_size_nm=(2.0, 1.0, 1.0))
    assert aniso.surface_area_px2 == pytest.approx(iso.surface_area_px2)
    # faces normal to z (2 x 19 x 19 px) keep their area; side walls double in height
    assert aniso.surface_area_nm2 > iso.surface_area_nm2
    assert aniso.solid_volume_nm3 == pytest.approx(2.0 * iso.solid_volume_nm3)
    # the pore is 8 nm thick instead of 4: its medial diameters double
    assert aniso.pore_diameter_median_nm == pytest.approx(2 * iso.pore_diameter_median_nm)


def test_voxels_cubic_to_a_float32_rounding_give_the_cubic_diameters():
    """z = 0.43400004 nm against x = y = 0.434 (an MRC's float32 pixel size, binned) moved the
    p90 diameter by 29 %: the anisotropic distance's ridge broke the voxel grid's ties on
    plateaus and dropped a fifth of the ridge."""
    rng = np.random.default_rng(1)
    mask = (rng.random((40, 48, 48)) < 0.5).astype(np.uint8)
    mask = (cv2.GaussianBlur(mask.astype(np.float32).reshape(40, -1), (0, 0), 2.0)
            .reshape(40, 48, 48) > 0.5).astype(np.uint8)
    cubic = volume_metrics(mask, voxel_size_nm=0.434)
    for sizes in ((0.43400004, 0.434, 0.434), (0.434 * (1 + 1e-5), 0.434, 0.434)):
        near = volume_metrics(mask, voxel_size_nm=sizes)
        for key in ("mean", "median", "p10", "p90"):
            assert getattr(near, f"pore_diameter_{key}_nm") == pytest.approx(
                getattr(cubic, f"pore_diameter_{key}_nm"), rel=1e-4)


def test_envelope_of_a_porous_crop_is_everything():
    rng = np.random.default_rng(0)
    mask = np.ones((30, 30, 30), dtype=bool)
    centres = rng.integers(0, 30, size=(40, 3))
    for c in centres:
        mask[_ball(mask.shape, c, 2)] = False
    env = grain_envelope(mask, 10.0)
    # Pores cut by the crop's faces are sealed, except digital leftovers in the face layer.
    assert env[1:-1, 1:-1, 1:-1].all()
    assert env.mean() > 0.99


def test_empty_and_bad_masks():
    m = volume_metrics(np.zeros((8, 8, 8), dtype=np.uint8))
    assert m.solid_volume_px3 == 0 and math.isnan(m.porosity_envelope)
    assert m.surface_area_px2 == 0.0 and m.pore_count == 0
    with pytest.raises(ValueError, match="0 \\(pore"):
        volume_metrics(np.full((4, 4, 4), 2, dtype=np.uint8))
    with pytest.raises(ValueError, match="3D"):
        volume_metrics(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="voxel_size_nm"):
        volume_metrics(np.zeros((4, 4, 4), dtype=np.uint8), voxel_size_nm=(1.0, -1.0, 1.0))


@pytest.mark.parametrize("radius_px", [0.0, 2.0, 3.5, 10.0])
def test_the_envelope_in_slabs_along_z_is_the_envelope_of_the_whole(monkeypatch, radius_px):
    from scipy import ndimage as ndi

    from nwwatch.volume import metrics

    field = ndi.gaussian_filter(np.random.default_rng(7).standard_normal((30, 26, 22)), 2.0)
    solid = field > 0.3 * field.std()
    whole = grain_envelope(solid, radius_px)
    monkeypatch.setattr(metrics, "ENVELOPE_SLAB_VOXELS", 1)  # one slice per slab
    np.testing.assert_array_equal(grain_envelope(solid, radius_px), whole)


def test_the_envelope_memory_is_bounded_by_its_slabs(monkeypatch):
    import tracemalloc

    from nwwatch.volume import metrics

    field = np.random.default_rng(3).standard_normal((64, 48, 48))
    solid = field > 0.5
    monkeypatch.setattr(metrics, "ENVELOPE_SLAB_VOXELS", 48 * 48 * 4)
    tracemalloc.start()
    try:
        grain_envelope(solid, 3.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Bool copies of the padded volume (1.7x the voxels here), the cavity labels (int32)
    # and the distances of one slab at a time: 19 bytes a voxel; the distances of the whole
    # padded volume took 72.
    assert peak / solid.size <= 24.0


def test_volume_metrics_beats_between_its_stages_and_the_envelopes_slabs(monkeypatch):
    from nwwatch.volume import metrics

    solid = _ball((20, 24, 24), (10, 12, 12), 8)
    solid[8:12, 10:14, 10:14] = False  # a cavity: pores to measure
    # Padded by 11 for the radius of 10: slices of 46 x 46, 42 of them; 6 a slab.
    monkeypatch.setattr(metrics, "ENVELOPE_SLAB_VOXELS", 46 * 46 * 6)
    beats = []
    volume_metrics(solid, (2.0, 1.0, 1.0), heartbeat=lambda: beats.append(1))
    # two closings of 7 slabs, then the stages (area, pores, distances, diameters)
    assert len(beats) >= 14 + 4


def test_a_cube_cut_by_a_band_without_data_has_the_surface_of_its_pieces():
    # A reconstruction's padding (NaN or a constant fill) cuts the grain as the volume's own
    # faces do: the solid's face next to no data is not a surface. Counted, a 64³ grain cut
    # by padding measured 2.7 % more surface than the same grain cropped to its data.
    mask = np.zeros((24, 24, 32), dtype=np.uint8)
    mask[4:20, 4:20, 4:28] = 1
    valid = np.ones(mask.shape, dtype=bool)
    valid[:, :, 13:17] = False  # a band of no data through the cube
    mask[~valid] = 0  # never solid there (nwwatch.volume.segment_volume)
    pieces = (volume_metrics(mask[:, :, :13], voxel_size_nm=(2.0, 1.0, 1.0)),
              volume_metrics(mask[:, :, 17:], voxel_size_nm=(2.0, 1.0, 1.0)))
    cut = volume_metrics(mask, voxel_size_nm=(2.0, 1.0, 1.0), valid=valid)
    assert cut.surface_area_px2 == pytest.approx(sum(p.surface_area_px2 for p in pieces))
    assert cut.surface_area_nm2 == pytest.approx(sum(p.surface_area_nm2 for p in pieces))
    # without the band's record its two cut faces (16 x 16 voxels each) count as surface
    assert volume_metrics(mask).surface_area_px2 > cut.surface_area_px2 + 2 * 15 * 15
    # a volume whose every voxel has data: the same as without `valid`
    assert volume_metrics(mask, valid=np.ones(mask.shape, bool)).surface_area_px2 == \
        volume_metrics(mask).surface_area_px2
    with pytest.raises(ValueError, match="valid"):
        volume_metrics(mask, valid=valid[:, :, :20])


def test_voxels_with_data_are_the_finite_ones_and_none_when_all_are():
    from nwwatch.volume.metrics import voxels_with_data

    volume = np.ones((3, 4, 5), dtype=np.float32)
    assert voxels_with_data(volume) is None
    assert voxels_with_data(volume.astype(np.uint16)) is None
    volume[1, :, :2] = np.nan
    volume[2, 0, 0] = np.inf
    valid = voxels_with_data(volume)
    assert valid.dtype == bool and np.count_nonzero(~valid) == 4 * 2 + 1


def test_voxels_without_data_are_neither_envelope_nor_pore():
    # Two round pores (radius 5) in a block filling the volume; then slices without data
    # (NaN in the reconstruction, never solid in the mask) across the first pore's middle,
    # and scattered voxels without data in the solid. Counted as pore, the slices joined
    # the pores into one and doubled the porosity, and each scattered voxel was one more
    # pore of one voxel.
    radius = 5
    mask = np.ones((30, 30, 60), dtype=np.uint8)
    holes = _ball(mask.shape, (15, 15, 15), radius) | _ball(mask.shape, (15, 15, 45), radius)
    mask[holes] = 0
    clean = volume_metrics(mask)
    assert clean.pore_count == 2 and clean.envelope_volume_px3 == mask.size

    valid = np.ones(mask.shape, dtype=bool)
    valid[15:17, :, :30] = False  # half of two slices, through the first pore's middle
    rng = np.random.default_rng(0)
    solid_voxels = np.argwhere(~holes & valid)
    scattered = solid_voxels[rng.choice(len(solid_voxels), 40, replace=False)]
    valid[tuple(scattered.T)] = False
    cut_mask = mask.copy()
    cut_mask[~valid] = 0
    m = volume_metrics(cut_mask, voxel_size_nm=(2.0, 1.0, 1.0), valid=valid)

    n_nodata = int(np.count_nonzero(~valid))
    pore = int(np.count_nonzero(holes & valid))
    assert m.envelope_volume_px3 == mask.size - n_nodata
    assert m.pore_volume_px3 == pore
    assert m.porosity_envelope == pytest.approx(pore / (mask.size - n_nodata))
    assert m.solid_volume_px3 == clean.solid_volume_px3 - np.count_nonzero(~holes & ~valid)
    # the cut pore counts as its two pieces, as a face would cut it; the scattered voxels
    # are no pores
    assert m.pore_count == 3
    # no ball is centred on a piece's cut face: the unknown voxels bound no pore, so the
    # diameters are those of the whole pores (the uncut one's, and none from the cut one)
    assert 2 * radius <= m.pore_diameter_p10_px <= m.pore_diameter_p90_px \
        <= 2 * radius + 2.0 / radius + 1e-9
    assert m.pore_diameter_p10_nm >= 2 * radius  # the anisotropic distances: the same rule
    # the surface leaves out the cut faces, as before
    assert m.surface_area_px2 < volume_metrics(cut_mask).surface_area_px2
