"""Synthetic tomograms: projector geometry, reconstruction, missing wedge, labels, files."""

from __future__ import annotations

import json
import math
import tomllib

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from skimage.filters import threshold_otsu

from nwwatch.classes import PORE, SOLID, UNLABELED
from nwwatch.synth.tomo_labels import patch_labels
from nwwatch.synth.tomo_phantom import gaussian_random_field, porous_grain
from nwwatch.synth.tomo_radon import backproject, fbp, field_of_view, project, sirt
from nwwatch.synth.tomogram import generate_tomogram, simulate_tomogram

CLEAN = {"noise": False, "shift_sigma_px": 0.0, "blur_sigma_px": 0.0}


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    return float((pred & truth).sum() / (pred | truth).sum())


# --- projector -----------------------------------------------------------------------------


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, -45.0, 64.0, 90.0])
def test_blob_projects_to_its_detector_coordinate(angle_deg):
    # A smooth blob, not a single voxel: bilinear sampling on a rotated grid conserves mass
    # only on average over sub-pixel offsets.
    n = 48
    z, x = 15.3, 30.0
    zz, xx = np.mgrid[:n, :n]
    blob = np.exp(-((zz - z) ** 2 + (xx - x) ** 2) / (2 * 1.5**2)).astype(np.float32)
    volume = np.repeat((blob / blob.sum())[:, None, :], 2, axis=1)
    sino = project(volume, np.array([angle_deg]))
    c = (n - 1) / 2
    a = math.radians(angle_deg)
    expected_t = (x - c) * math.cos(a) - (z - c) * math.sin(a) + c
    row = sino[0, 1]
    assert (row * np.arange(n)).sum() / row.sum() == pytest.approx(expected_t, abs=0.1)
    assert row.sum() == pytest.approx(1.0, abs=0.02)


def test_backproject_is_the_adjoint_of_project():
    rng = np.random.default_rng(0)
    n, angles = 40, np.linspace(-60, 60, 21)
    x = rng.random((n, 3, n)).astype(np.float32)
    y = rng.random((angles.size, 3, n)).astype(np.float32)
    lhs = float((project(x, angles).astype(np.float64) * y).sum())
    rhs = float((x.astype(np.float64) * backproject(y, angles)).sum())
    assert lhs == pytest.approx(rhs, rel=2e-3)


def test_full_range_fbp_and_sirt_recover_a_disk():
    n = 48
    c = (n - 1) / 2
    z, x = np.mgrid[:n, :n]
    disk = (((z - c) ** 2 + (x - c - 4) ** 2) < 12**2).astype(np.float32)
    volume = np.repeat(disk[:, None, :], 2, axis=1)
    angles = np.arange(-90.0, 90.0, 1.5)
    sino = project(volume, angles)
    for rec in (fbp(sino, angles), sirt(sino, angles, n_iter=40)):
        assert np.corrcoef(rec[:, 0].ravel(), disk.ravel())[0, 1] > 0.97
        assert rec[:, 0][disk > 0].mean() == pytest.approx(1.0, abs=0.08)


def test_project_rejects_non_square_xz():
    with pytest.raises(ValueError, match="Z == X"):
        project(np.zeros((10, 4, 12), np.float32), np.array([0.0]))


# --- phantom -----------------------------------------------------------------------------


def test_random_field_is_standardised_and_correlated():
    field = gaussian_random_field((64, 64, 64), 3.0, np.random.default_rng(1))
    assert field.dtype == np.float32
    assert abs(field.mean()) < 1e-3 and field.std() == pytest.approx(1.0, abs=1e-3)
    # Gaussian autocorrelation of std sqrt(2) * 3: at lag 3 it is exp(-9 / 36) ~ 0.78.
    lag = float(np.mean(field * np.roll(field, 3, axis=2)))
    assert lag == pytest.approx(math.exp(-0.25), abs=0.08)


@pytest.mark.parametrize("porosity", [0.3, 0.55])
def test_porous_grain_has_the_requested_porosity_inside_the_field_of_view(porosity):
    truth, grain = porous_grain(48, np.random.default_rng(2), porosity=porosity)
    assert truth.dtype == np.uint8 and set(np.unique(truth)) <= {0, 1}
    assert 1.0 - truth[grain].mean() == pytest.approx(porosity, abs=0.01)
    assert not truth[~grain].any()
    outside = ~field_of_view(48)
    assert not grain[:, :, :][np.broadcast_to(outside[:, None, :], grain.shape)].any()


# --- simulation ----------------------------------------------------------------------------


def test_simulation_is_deterministic_and_typed():
    a = simulate_tomogram(32, seed=3)
    b = simulate_tomogram(32, seed=3)
    c = simulate_tomogram(32, seed=4)
    assert a.volume.shape == a.truth.shape == (32, 32, 32)
    assert a.volume.dtype == np.float32 and a.truth.dtype == np.uint8
    np.testing.assert_array_equal(a.volume, b.volume)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.array_equal(a.truth, c.truth)
    assert a.angles_deg[0] == -65.0 and a.angles_deg[-1] == 65.0


def test_full_range_noise_free_reconstruction_matches_truth():
    tomo = simulate_tomogram(48, seed=1, tilt_max_deg=90.0, tilt_step_deg=1.5, **CLEAN)
    r = np.corrcoef(tomo.volume.ravel(), tomo.truth.ravel())[0, 1]
    assert r > 0.9
    assert _iou(tomo.volume > 0.5, tomo.truth) > 0.85


def _wedge_energy_share(xz_slices: np.ndarray, half_angle_deg: float) -> float:
    """Share of spectral energy within ``half_angle_deg`` of the kz axis (DC region excluded)."""
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(xz_slices), axes=(-2, -1))) ** 2
    n = xz_slices.shape[-1]
    k = np.arange(n) - n // 2
    kz, kx = np.meshgrid(k, k, indexing="ij")
    radius = np.hypot(kz, kx)
    from_kz_deg = np.degrees(np.arctan2(np.abs(kx), np.abs(kz)))
    ring = (radius > 3) & (radius < n // 2)
    energy = spectrum.sum(axis=0)
    return float(energy[ring & (from_kz_deg < half_angle_deg)].sum() / energy[ring].sum())


def test_missing_wedge_is_empty_in_the_xz_spectrum():
    tomo = simulate_tomogram(48, seed=2, tilt_max_deg=60.0, **CLEAN)
    xz_recon = tomo.volume.transpose(1, 0, 2)  # (Y, Z, X): one XZ slice per tilt-axis position
    xz_truth = tomo.truth.transpose(1, 0, 2).astype(np.float32)
    recon_share = _wedge_energy_share(xz_recon, 20.0)
    truth_share = _wedge_energy_share(xz_truth, 20.0)
    assert truth_share > 0.1  # an isotropic structure has energy there ...
    assert recon_share < 0.2 * truth_share  # ... the reconstruction does not
    full = simulate_tomogram(48, seed=2, tilt_max_deg=90.0, tilt_step_deg=1.5, **CLEAN)
    assert _wedge_energy_share(full.volume.transpose(1, 0, 2), 20.0) > 0.5 * truth_share


def test_default_difficulty_defeats_otsu():
    tomo = simulate_tomogram(64, seed=0)
    volume = tomo.volume
    assert _iou(volume > threshold_otsu(volume), tomo.truth) < 0.75
    # ... while the same grain imaged with a full, clean series is easy.
    clean = simulate_tomogram(64, seed=0, tilt_max_deg=90.0, tilt_step_deg=1.5, **CLEAN)
    assert _iou(clean.volume > threshold_otsu(clean.volume), clean.truth) > 0.85


def _solid_mean_by_depth(tomo) -> tuple[float, float]:
    """Mean reconstructed value of solid voxels near the grain's surface and deep inside it."""
    grain = tomo.grain.astype(np.uint8)
    depth = np.stack([cv2.distanceTransform(s, cv2.DIST_L2, 5) for s in grain])
    solid = tomo.truth.astype(bool)
    rim = solid & (depth > 0) & (depth <= 4)
    core = solid & (depth >= 10)
    return float(tomo.volume[rim].mean()), float(tomo.volume[core].mean())


def test_saturation_darkens_the_grain_core_cupping():
    full = {"tilt_max_deg": 90.0, "tilt_step_deg": 1.5, **CLEAN}
    rim, core = _solid_mean_by_depth(simulate_tomogram(64, seed=0, **full))
    assert core > 0.9 * rim  # a linear signal: the solid looks the same everywhere
    rim_sat, core_sat = _solid_mean_by_depth(simulate_tomogram(64, seed=0, saturation_px=12.0,
                                                               **full))
    assert core_sat < 0.75 * rim_sat  # saturated rays through the thick core: cupping
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="saturation_px"):
            simulate_tomogram(32, saturation_px=bad)


def test_bad_knobs_raise():
    with pytest.raises(ValueError, match="reconstruction"):
        simulate_tomogram(32, reconstruction="art")
    with pytest.raises(ValueError, match="tilt"):
        simulate_tomogram(32, tilt_max_deg=0.0)


# --- labels ----------------------------------------------------------------------------------


def _check_patches(labels: np.ndarray, truth: np.ndarray, patch_px: int, gap_px: int = 0) -> int:
    labeled = labels != UNLABELED
    rows, cols = truth.shape[0] // patch_px, truth.shape[1] // patch_px
    # Nothing labeled in the partial patches at the right/bottom edge.
    assert not labeled[rows * patch_px:, :].any() and not labeled[:, cols * patch_px:].any()
    blocks = labeled[: rows * patch_px, : cols * patch_px].reshape(rows, patch_px, cols, patch_px)
    # nothing in the gap at each cell's bottom and right
    assert not blocks[:, patch_px - gap_px:].any() and not blocks[:, :, :, patch_px - gap_px:].any()
    side = patch_px - gap_px
    per_block = blocks[:, :side, :, :side].mean(axis=(1, 3))
    assert set(np.unique(per_block)) <= {0.0, 1.0}  # whole aligned patches only
    np.testing.assert_array_equal(labels[labeled], np.where(truth[labeled] == 1, SOLID, PORE))
    solid = (labels == SOLID)[: rows * patch_px, : cols * patch_px]
    solid_share = (solid.reshape(rows, patch_px, cols, patch_px)[:, :side, :, :side]
                   .mean(axis=(1, 3))[per_block == 1])  # of the labeled square
    assert (solid_share >= 0.5).any() and (solid_share <= 0.5).any()
    return int((per_block == 1).sum())


def test_patch_labels_layout_and_fraction():
    truth, grain = porous_grain(100, np.random.default_rng(5), porosity=0.45)
    for seed in range(5):
        labels = patch_labels(truth[50], 0.1, np.random.default_rng(seed), grain=grain[50])
        assert labels.dtype == np.uint8
        assert _check_patches(labels, truth[50], 10) == 10
        assert (labels != UNLABELED).mean() == pytest.approx(0.1)


def test_patch_labels_prefer_a_pore_patch_inside_the_grain():
    truth, grain = porous_grain(100, np.random.default_rng(6), porosity=0.45)
    inside_pore = 0
    for seed in range(10):
        labels = patch_labels(truth[50], 0.02, np.random.default_rng(seed), grain=grain[50])
        blocks = np.flatnonzero((labels != UNLABELED).reshape(10, 10, 10, 10).mean(axis=(1, 3))
                                .reshape(-1) == 1)
        inside = grain[50].reshape(10, 10, 10, 10).mean(axis=(1, 3)).reshape(-1)[blocks]
        solid = (truth[50] == 1).reshape(10, 10, 10, 10).mean(axis=(1, 3)).reshape(-1)[blocks]
        inside_pore += bool(np.any((inside >= 0.5) & (solid <= 0.5)))
    assert inside_pore == 10


def test_patch_labels_reject_a_single_class_slice():
    with pytest.raises(ValueError, match="both solid and pore"):
        patch_labels(np.zeros((40, 40), np.uint8), 0.1, np.random.default_rng(0))


# --- files and CLI ---------------------------------------------------------------------------


def test_generate_writes_a_consistent_training_set(tmp_path):
    summary = generate_tomogram(tmp_path / "a", size=48, seed=7, labeled_fraction=0.1)
    again = generate_tomogram(tmp_path / "b", size=48, seed=7, labeled_fraction=0.1)
    assert summary == again
    out = tmp_path / "a"
    volume = tifffile.imread(out / "volume.tif")
    truth = tifffile.imread(out / "truth.tif")
    assert volume.shape == truth.shape == (48, 48, 48)
    assert volume.dtype == np.float32 and truth.dtype == np.uint8
    np.testing.assert_array_equal(volume, tifffile.imread(tmp_path / "b" / "volume.tif"))
    k = summary["labeled_slice"]
    image = tifffile.imread(out / "train" / "images" / f"slice_{k:03d}.tif")
    np.testing.assert_array_equal(image, volume[k])
    labels = cv2.imread(str(out / "train" / "labels" / f"slice_{k:03d}.png"),
                        cv2.IMREAD_UNCHANGED)
    # patches of 9 px in cells of 10: separate (training's 8-connected patches)
    n_patches = _check_patches(labels, truth[k], 10, gap_px=1)
    assert n_patches == round(0.1 * 48 * 48 / 81) == summary["labeled_patches"]
    assert summary["labeled_fraction"] == pytest.approx(n_patches * 81 / 48**2, abs=1e-6)
    assert abs(summary["labeled_fraction"] - 0.1) <= 0.5 * 81 / 48**2
    unlabeled = out / "train" / "unlabeled" / "volume.tif"
    np.testing.assert_array_equal(tifffile.imread(unlabeled), volume)
    dataset = tomllib.loads((out / "train" / "dataset.toml").read_text())
    # only the keys the DATA reader knows (before: also images, labels, labeled_slices, ...,
    # which read_dataset_toml refuses, so `nwwatch train OUT/train` failed on its first line)
    assert dataset == {"kind": "tomogram", "classes": ["pore", "solid"]}
    from nwwatch.io.dataset import pair_folder, read_dataset_toml

    assert read_dataset_toml(out / "train") == ("tomogram", ("pore", "solid"), "volume")
    assert [stem for stem, _, _ in pair_folder(out / "train")] == [f"slice_{k:03d}"]
    from nwwatch.io import read_volume

    assert read_volume(out / "volume.tif").voxel_size_nm == pytest.approx((1.0, 1.0, 1.0))
    on_disk = json.loads((out / "tomogram.json").read_text())
    assert on_disk == summary
    assert on_disk["tilt_min_deg"] == -65.0 and on_disk["missing_wedge_deg"] == 50.0
    assert on_disk["porosity"] == pytest.approx(0.45, abs=0.01)
    assert on_disk["solid_fraction"] == pytest.approx(float(truth.mean()), abs=1e-6)


def test_a_second_run_into_the_same_folder_leaves_one_labeled_slice(tmp_path):
    # Another size or seed labels another slice; the first run's slice would stay in
    # train/ as a second labeled image (of another volume's shape) next to the new one.
    first = generate_tomogram(tmp_path, size=48, labeled_fraction=0.1, seed=0)
    mine = tmp_path / "train" / "labels" / "my_own.png"  # not listed by synth: kept
    mine.write_bytes(b"x")
    second = generate_tomogram(tmp_path, size=32, labeled_fraction=0.1, seed=0)
    assert first["labeled_slice"] != second["labeled_slice"]
    name = f"slice_{second['labeled_slice']:03d}"
    assert sorted(p.name for p in (tmp_path / "train" / "images").iterdir()) == [f"{name}.tif"]
    assert sorted(p.name for p in (tmp_path / "train" / "labels").iterdir()) == [
        "my_own.png", f"{name}.png"]


def test_generate_rejects_unknown_knobs(tmp_path):
    with pytest.raises(TypeError, match="dose"):
        generate_tomogram(tmp_path, size=32, dose=3)


def test_cli_writes_every_file(tmp_path):
    from nwwatch.cli import main

    out = tmp_path / "tomo"
    result = CliRunner().invoke(main, ["synth", "tomogram", str(out), "--size", "40",
                                       "--seed", "3", "--labeled-fraction", "0.05"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "tomogram.json").read_text())
    k = summary["labeled_slice"]
    for name in ("volume.tif", "truth.tif", "tomogram.json", "train/dataset.toml",
                 f"train/images/slice_{k:03d}.tif", f"train/labels/slice_{k:03d}.png",
                 "train/unlabeled/volume.tif"):
        assert (out / name).is_file(), name
    assert summary["size"] == 40 and summary["seed"] == 3
    # 5 % of 40 x 40 is 1 patch of 9 px: two are labeled (one per class), as --help says.
    assert summary["labeled_patches"] == 2 and summary["labeled_fraction"] == 162 / 40**2
    help_text = " ".join(CliRunner().invoke(main, ["synth", "tomogram", "--help"]).output.split())
    assert "rounded to whole patches, at least two (one per class)" in help_text
    assert summary["labeled_patches"] == 2  # round(0.05 * 1600 / 81) = 1, at least 2


def test_cli_passes_the_appearance_knobs(tmp_path):
    from nwwatch.cli import main

    out = tmp_path / "hard"
    result = CliRunner().invoke(main, ["synth", "tomogram", str(out), "--size", "32",
                                       "--saturation-px", "8", "--density-variation", "0.2"])
    assert result.exit_code == 0, result.output
    params = json.loads((out / "tomogram.json").read_text())["params"]
    assert params["saturation_px"] == 8.0 and params["density_variation"] == 0.2
    expected = simulate_tomogram(32, seed=0, saturation_px=8.0, density_variation=0.2).volume
    np.testing.assert_array_equal(tifffile.imread(out / "volume.tif"), expected)


def test_cli_reports_bad_values(tmp_path):
    from nwwatch.synth.tomogram_cli import tomogram

    result = CliRunner().invoke(tomogram, [str(tmp_path / "x"), "--labeled-fraction", "0"])
    assert result.exit_code != 0
    assert "labeled-fraction" in result.output
    # a dose past numpy's Poisson range printed a RuntimeWarning and "lam value too large"; a
    # misalignment of a million pixels wrote a volume of noise as a tomogram
    for option, value in (("--counts-per-voxel", "1e300"), ("--shift-sigma-px", "1e6")):
        result = CliRunner().invoke(tomogram, [str(tmp_path / "y"), "--size", "32",
                                               option, value])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
        assert not (tmp_path / "y").exists()


def test_cli_refuses_a_voxel_size_that_is_not_finite(tmp_path) -> None:
    # before: nan passed click's FloatRange into the generator
    from click.testing import CliRunner

    from nwwatch.cli import main

    for value in ("nan", "1e-6", "2e4"):
        # 1e-6 nm and 20 um: sizes every reader ignores as implausible (nwwatch.io.limits),
        # so the volume would have been written with a calibration no command uses
        result = CliRunner().invoke(main, ["synth", "tomogram", str(tmp_path / "t"),
                                           "--size", "16", "--voxel-size-nm", value])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--voxel-size-nm'" in result.output
        assert not (tmp_path / "t").exists()


def test_cli_never_leaves_a_labeled_slice_of_another_volume(tmp_path) -> None:
    # the labeled slice's index depends on size and seed: before, a rerun with another size
    # left the old slice_KKK beside the new one, and train read both with the new volume
    from click.testing import CliRunner

    from nwwatch.cli import main

    out = tmp_path / "t"
    args = ["synth", "tomogram", str(out), "--size", "24"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = sorted(p.name for p in (out / "train" / "images").iterdir())
    # the same size and seed replace every file: allowed (other knobs may change)
    result = CliRunner().invoke(main, [*args, "--porosity", "0.3"])
    assert result.exit_code == 0, result.output
    # another size labels another slice: synth's own earlier slice is replaced
    result = CliRunner().invoke(main, ["synth", "tomogram", str(out), "--size", "32"])
    assert result.exit_code == 0, result.output
    k = json.loads((out / "tomogram.json").read_text())["labeled_slice"]
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [f"slice_{k:03d}.tif"]
    assert [f"slice_{k:03d}.tif"] != before
    # a labeled slice synth did not write is never read with the new volume: refused
    foreign = out / "train" / "images" / "mine.tif"
    foreign.write_bytes(b"x")
    result = CliRunner().invoke(main, ["synth", "tomogram", str(out), "--size", "24"])
    assert result.exit_code == 1, result.output
    assert f"{out} already holds labeled slices that synth did not write" in result.output
    assert "train/images/mine.tif" in result.output
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [
        "mine.tif", f"slice_{k:03d}.tif"]
    assert json.loads((out / "tomogram.json").read_text())["size"] == 32  # untouched


def test_cli_refuses_a_size_too_small_for_two_patches_before_writing(tmp_path) -> None:
    """`--size 16` (the option's lower bound) with the default 10 px patches rendered the
    volume and then failed with "a (16, 16) slice holds fewer than 2 patches of 10 px",
    leaving an empty OUT and no way forward in the message."""
    from nwwatch.cli import main

    result = CliRunner().invoke(main, ["synth", "tomogram", str(tmp_path / "t"), "--size", "16"])
    assert result.exit_code == 2, result.output
    assert "--size 20 or more, or --patch-size 8 or less" in result.output
    assert not (tmp_path / "t").exists()
    ok = CliRunner().invoke(main, ["synth", "tomogram", str(tmp_path / "t"), "--size", "16",
                                   "--patch-size", "8"])
    assert ok.exit_code == 0, ok.output


def test_cli_refuses_a_tilt_below_its_step_and_scenes_it_cannot_draw_leaving_no_folder(
        tmp_path) -> None:
    """`--tilt-max-deg 1` was "need 0 < tilt_step_deg <= tilt_max_deg <= 90" (no such option)
    and, like a porosity whose patches hold no pore, left an empty OUT behind."""
    from nwwatch.cli import main

    tilt = CliRunner().invoke(main, ["synth", "tomogram", str(tmp_path / "a"), "--size", "32",
                                     "--tilt-max-deg", "1"])
    assert tilt.exit_code == 2 and "Invalid value for '--tilt-max-deg'" in tilt.output
    porous = CliRunner().invoke(main, ["synth", "tomogram", str(tmp_path / "b"), "--size",
                                       "32", "--porosity", "0.999"])
    assert porous.exit_code == 1, porous.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_never_replaces_a_volume_synth_did_not_write(tmp_path) -> None:
    """`volume.tif` is what a user's own tomogram is often called: a folder that no earlier
    synth run wrote (no tomogram.json of synth's naming the file) keeps it, and the run is
    refused naming it, before anything is written."""
    from nwwatch.cli import main

    out = tmp_path / "mydata"
    out.mkdir()
    mine = {"volume.tif": b"my tomogram", "tomogram.json": b"my notes",
            "truth.tif": b"my segmentation"}
    for name, content in mine.items():
        (out / name).write_bytes(content)
    result = CliRunner().invoke(main, ["synth", "tomogram", str(out), "--size", "24"])
    assert result.exit_code == 1, result.output
    assert "synth did not write" in result.output
    for name in mine:
        assert name in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == mine  # nothing touched
    # a folder holding only a volume.tif (no tomogram.json at all) is refused the same way
    (out / "tomogram.json").unlink()
    (out / "truth.tif").unlink()
    result = CliRunner().invoke(main, ["synth", "tomogram", str(out), "--size", "24"])
    assert result.exit_code == 1, result.output
    assert (out / "volume.tif").read_bytes() == b"my tomogram"
    assert sorted(p.name for p in out.iterdir()) == ["volume.tif"]


def test_cli_says_a_size_that_does_not_fit_in_memory(tmp_path) -> None:
    # --size 3000 ended in numpy's ArrayMemoryError traceback. The process gets a 3 GiB
    # address-space limit, so that --size 1024 (8 GiB arrays) fails alike on any machine.
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    out = tmp_path / "big"
    run = subprocess.run([sys.executable, "-m", "nwwatch", "synth", "tomogram", str(out),
                          "--size", "1024"], capture_output=True, text=True, timeout=120,
                         preexec_fn=limit)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("Error: --size 1024: a 1024^3 volume needs more memory than "
                                 "this process can allocate (Unable to allocate ")
    assert "choose a smaller --size" in run.stderr
    assert not out.exists()  # the folder it made for the run is removed again


def test_the_missing_wedge_of_a_full_tilt_range_is_none():
    """--tilt-max-deg 90 recorded a 2 deg wedge: +90 is -90's projection, dropped as a
    duplicate, and the range of the rest is 178 deg."""
    from nwwatch.synth.tomogram import _missing_wedge_deg

    assert _missing_wedge_deg(np.arange(-90.0, 90.0, 2.0)) == 0.0
    assert _missing_wedge_deg(np.arange(-64.0, 64.1, 2.0)) == 52.0
    assert _missing_wedge_deg(np.array([0.0])) == 180.0


def test_synthetic_patches_are_separate_and_counted_as_training_counts_them(tmp_path):
    # Patches were whole cells of one aligned grid: neighbouring cells touched, training took
    # them for one 8-connected patch (size 64, 10 %, seed 1: "1 of 1 patches hold both
    # classes", no cross-validation) while tomogram.json said 4.
    from training.volume_folds import count_patches, patch_groups

    summary = generate_tomogram(tmp_path, size=64, labeled_fraction=0.1, seed=1)
    k = summary["labeled_slice"]
    labels = cv2.imread(str(tmp_path / "train" / "labels" / f"slice_{k:03d}.png"),
                        cv2.IMREAD_UNCHANGED)
    assert summary["labeled_patches"] == count_patches([labels]) == 5
    truth = tifffile.imread(tmp_path / "truth.tif")
    cells = _check_patches(labels, truth[k], 10, gap_px=1)
    assert cells == 5
    assert summary["patch_px"] == 10 and summary["patch_gap_px"] == 1
    assert len(np.unique(patch_groups([labels])[0])) - 1 == cells  # none cut by the 20 px grid


def test_patch_labels_gap_leaves_every_patch_apart():
    truth, grain = porous_grain(60, np.random.default_rng(5), porosity=0.45)
    from scipy import ndimage as ndi

    labels = patch_labels(truth[30], 0.5, np.random.default_rng(0), grain=grain[30], gap_px=1)
    cells = _check_patches(labels, truth[30], 10, gap_px=1)
    assert cells == round(0.5 * 3600 / 81)  # 22 of the 36 cells, many of them neighbours
    assert ndi.label(labels != UNLABELED, structure=np.ones((3, 3), bool))[1] == cells
    with pytest.raises(ValueError, match="gap_px"):
        patch_labels(truth[30], 0.1, np.random.default_rng(0), patch_px=2, gap_px=2)


def test_patch_labels_with_a_gap_give_both_classes_on_small_patches():
    """A cell of 2 px labels 1 px: a cell judged "mostly pore" on its 4 pixels could label
    its one solid pixel, leaving the training slice with one class. The forced patches are
    judged on what they label."""
    for seed in range(60):
        rng = np.random.default_rng(seed)
        truth = (rng.random((20, 20)) < 0.5).astype(np.uint8)
        labels = patch_labels(truth, 0.01, rng, patch_px=2, gap_px=1)
        assert set(np.unique(labels[labels != UNLABELED]).tolist()) == {PORE, SOLID}, seed
        _check_patches(labels, truth, 2, gap_px=1)


def test_generate_labels_both_classes_with_small_patches(tmp_path):
    generate_tomogram(tmp_path, size=32, seed=0, patch_px=2, labeled_fraction=0.001)
    (path,) = (tmp_path / "train" / "labels").glob("*.png")
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(labels[labels != UNLABELED]).tolist()) == {PORE, SOLID}


def test_generate_refuses_patches_without_room_for_the_gap(tmp_path):
    with pytest.raises(ValueError, match="patch_px must be > 1"):
        generate_tomogram(tmp_path, size=16, patch_px=1)
