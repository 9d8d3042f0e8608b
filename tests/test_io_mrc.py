"""MRC files (nwwatch.io.mrc), written by mrcfile as IMOD, AreTomo and SerialEM write them, read
through the same readers as TIFF: pixel types, calibration, incomplete and bad files, and the
replay of an MRC tomogram giving the rows of its TIFF twin."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pyarrow.dataset as ds
import pytest
from chunkkit import assert_chunks_are_the_whole_read
from servicekit import model

from nwwatch.io import (
    AnisotropicPixelsError,
    EmptyFileError,
    NotARegularFileError,
    NotATiffError,
    TruncatedTiffError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    check_tomogram,
    inspect_tiff,
    read_frames,
    read_volume,
)


def _write(path: Path, data: np.ndarray, voxel_size_a=None, extended: bytes | None = None
           ) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if voxel_size_a is not None:
            mrc.voxel_size = voxel_size_a  # (x, y, z) in Å
        if extended is not None:
            mrc.set_extended_header(np.frombuffer(extended, dtype="V1"))
    return path


def _patch_header(path: Path, offset: int, fmt: str, *values) -> None:
    raw = bytearray(path.read_bytes())
    struct.pack_into("<" + fmt, raw, offset, *values)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("stored, returned", [
    (np.int16, np.int16), (np.float32, np.float32), (np.uint16, np.uint16),
    (np.float16, np.float32), (np.int8, np.int16)])
def test_every_mode_reads_back_its_values(tmp_path, stored, returned):
    rng = np.random.default_rng(0)
    data = (rng.random((5, 6, 7)) * 100 - (30 if np.dtype(stored).kind in "if" else 0))
    data = data.astype(stored)
    path = _write(tmp_path / "tomo.rec", data, voxel_size_a=(2.0, 3.0, 4.0))
    volume = read_volume(path)
    assert volume.data.dtype == returned and volume.data.shape == (5, 6, 7)
    np.testing.assert_array_equal(volume.data, data.astype(returned))
    assert volume.voxel_size_nm == pytest.approx((0.4, 0.3, 0.2))  # (z, y, x), Å -> nm
    assert volume.source == path
    info = inspect_tiff(path)
    assert (info.layout, info.n_pages, info.shape, info.axes) == ("mrc", 5, (5, 6, 7), "ZYX")
    assert info.dtype == returned and info.declared_bytes == data.size * np.dtype(
        returned).itemsize


def test_imods_unsigned_bytes_are_read_as_uint8(tmp_path):
    # IMOD writes mode 0 as unsigned bytes unless its header flags say signed: 200 is 200,
    # not -56
    data = np.array([[[0, 200], [100, 255]]] * 2, np.uint8)
    path = _write(tmp_path / "t.mrc", data.view(np.int8))
    _patch_header(path, 152, "ii", 1146047817, 0)  # imodStamp, flags without "signed"
    assert read_volume(path).data.dtype == np.uint8
    np.testing.assert_array_equal(read_volume(path).data, data)
    _patch_header(path, 152, "ii", 1146047817, 1)  # signed
    np.testing.assert_array_equal(read_volume(path).data, data.view(np.int8).astype(np.int16))


def test_imods_4_bit_mode_is_refused_as_such_not_as_a_file_cut_short(tmp_path):
    path = _write(tmp_path / "packed.mrc", np.zeros((2, 4, 8), np.int8))
    _patch_header(path, 152, "ii", 1146047817, 16)  # imodStamp, flags: 4-bit
    with pytest.raises(UnsupportedDtypeError, match="packed.mrc: MRC mode 0 with IMOD's 4-bit"):
        read_volume(path)


def test_big_endian_and_extended_header_files(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=">f4").reshape(2, 3, 4)
    path = _write(tmp_path / "be.mrc", data, extended=bytes(range(256)) * 4)
    volume = read_volume(path)
    assert volume.data.dtype.isnative and volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, data.astype(np.float32))
    assert volume.voxel_size_nm is None  # no calibration: cell size 0


def test_an_mrcs_stack_reads_as_frames_with_its_pixel_size(tmp_path):
    data = np.random.default_rng(1).integers(0, 4000, (3, 16, 20)).astype(np.uint16)
    path = tmp_path / "movie.mrcs"
    with mrcfile.new(path) as mrc:  # as SerialEM writes a movie: a stack of images
        mrc.set_data(data)
        mrc.set_image_stack()
        mrc.voxel_size = (4.2, 4.2, 1.0)
    assert inspect_tiff(path).axes == "IYX"  # not declared Z slices: no tomogram note
    frames = read_frames(path)
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), data)
    assert all(f.pixel_size_nm == pytest.approx(0.42) for f in frames)
    assert all(f.acquired_at_source == "mtime" for f in frames)
    one = read_frames(_write(tmp_path / "one.mrc", data[:1]))
    assert len(one) == 1 and one[0].pixel_size_nm is None
    assert inspect_tiff(tmp_path / "one.mrc").axes == "YX"
    _write(tmp_path / "aniso.mrc", data, voxel_size_a=(4.0, 5.0, 1.0))
    with pytest.raises(AnisotropicPixelsError, match="aniso.mrc"):
        read_frames(tmp_path / "aniso.mrc")


def test_an_mrc_being_written_is_truncated_at_every_cut(tmp_path):
    # the service keeps a file that fails its structural check as a candidate until its size
    # settles: every cut must be an InputError, never a partial volume
    full = _write(tmp_path / "full.rec", np.ones((4, 8, 8), np.float32)).read_bytes()
    path = tmp_path / "part.rec"
    for cut in (1, 100, 1023, 1024, 1025, len(full) - 1):
        path.write_bytes(full[:cut])
        with pytest.raises(TruncatedTiffError, match="part.rec.*(cut short|still being)"):
            inspect_tiff(path)
        with pytest.raises(TruncatedTiffError):
            read_volume(path)
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="part.rec"):
        read_volume(path)
    path.write_bytes(full)
    assert read_volume(path).data.shape == (4, 8, 8)


def test_bad_mrc_files_are_refused_naming_the_file_and_the_reason(tmp_path):
    garbage = tmp_path / "notes.mrc"
    garbage.write_bytes(b"these are not voxels " * 100)
    with pytest.raises(TruncatedTiffError, match="notes.mrc: not an MRC file"):
        read_volume(garbage)
    complex_ = _write(tmp_path / "c.mrc", np.ones((2, 4, 4), np.complex64))
    with pytest.raises(UnsupportedDtypeError, match=r"c.mrc: MRC mode 4 \(complex float32\)"):
        read_volume(complex_)
    swapped = _write(tmp_path / "s.mrc", np.ones((2, 4, 4), np.float32))
    _patch_header(swapped, 64, "iii", 2, 1, 3)  # mapc, mapr, maps: rows first
    with pytest.raises(UnsupportedLayoutError, match=r"s.mrc: MRC axes .*\(2, 1, 3\)"):
        read_volume(swapped)
    one = _write(tmp_path / "slice.rec", np.arange(16, dtype=np.float32).reshape(1, 4, 4))
    with pytest.raises(UnsupportedLayoutError, match="slice.rec: a 2-D image"):
        check_tomogram(read_volume(one))
    fifo = tmp_path / "pipe.mrc"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="pipe.mrc"):
        inspect_tiff(fifo)


def test_an_axis_map_that_is_no_order_is_read_as_x_y_z(tmp_path):
    """A header whose mapc, mapr, maps are no permutation of 1, 2, 3 (0, 0, 0: left unset by
    its writer) declares no order: its sections are read as X, Y, Z, as IMOD, mrcfile and
    ChimeraX read them; a true permutation other than 1, 2, 3 is still refused."""
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    path = _write(tmp_path / "unset.rec", data, voxel_size_a=12.0)
    _patch_header(path, 64, "iii", 0, 0, 0)
    assert inspect_tiff(path).axes == "ZYX"
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size_nm == pytest.approx((1.2, 1.2, 1.2))
    _patch_header(path, 64, "iii", 3, 1, 2)  # EMDB's crystallographic order (EMD-3001)
    with pytest.raises(UnsupportedLayoutError,
                       match=r"unset.rec: MRC axes .*\(3, 1, 2\).*ChimeraX"):
        read_volume(path)


@pytest.mark.parametrize("quirk", ["no map id, zero stamp", "old serialem", "negative cell"])
def test_headers_of_other_writers_read_as_mrcfile_reads_them(tmp_path, quirk):
    """Header quirks of real files: stacks without the MAP ID and with a zero machine stamp
    (cryoDRGN's test data), a 2002 SerialEM header (stamp 0x44 0 0 0, a 1024-byte extended
    header whose type bytes are 0xcd fill), a Direct Electron movie's negative cell (no
    calibration)."""
    data = np.arange(4 * 6 * 8, dtype=np.int16).reshape(4, 6, 8)
    extended = bytes(1024) if quirk == "old serialem" else None
    path = _write(tmp_path / "stack.mrcs", data, voxel_size_a=(3.17, 3.17, 3.17),
                  extended=extended)
    if quirk == "no map id, zero stamp":
        _patch_header(path, 208, "4s4s", b"\0" * 4, b"\0" * 4)
    elif quirk == "old serialem":
        _patch_header(path, 104, "4si", b"\xcd" * 4, -842150451)  # exttyp, nversion
        _patch_header(path, 208, "4s4s", b"MAP ", b"D\0\0\0")
    else:
        _patch_header(path, 40, "fff", -25.36, -19.02, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile's doubts about these headers
        with mrcfile.open(path, permissive=True) as mrc:
            expected = np.array(mrc.data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nwwatch reads them without a warning
        frames = read_frames(path)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), expected)
    assert np.array_equal(expected, data)
    pixel_nm = None if quirk == "negative cell" else pytest.approx(0.317)
    assert frames[0].pixel_size_nm == pixel_nm


def test_another_format_under_an_mrc_name_is_no_mrc_file(tmp_path):
    """A JEOL EDS map (.map) has no MRC pixel mode and no axis map where an MRC header holds
    them: it is refused as no MRC file, not as an MRC file with its axes out of order."""
    path = _write(tmp_path / "View000_0000001.map", np.zeros((2, 4, 4), np.float32))
    _patch_header(path, 12, "i", 1651067962)  # mode: text bytes of the JEOL header
    _patch_header(path, 64, "iii", 0, 0, 0)
    for read in (inspect_tiff, read_volume, read_frames):
        with pytest.raises(TruncatedTiffError,
                           match=r"View000_0000001.map: not an MRC file.*mode 1651067962"):
            read(path)


def test_a_tilt_series_is_told_to_be_reconstructed(tmp_path):
    path = tmp_path / "tilt.st"
    path.write_bytes(bytes(1024))
    with pytest.raises(NotATiffError, match="a tilt series.*reconstruct"):
        read_volume(path)


def test_an_mrc_tomogram_replays_to_the_rows_of_its_tiff_twin(tmp_path):
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import write_volume_tiff
    from nwwatch.service import replay
    from nwwatch.service.replay import list_inputs

    tomo_model = model(tmp_path, kind="tomogram")
    vol = np.full((12, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    vol[2:10, 5:30, 10:40] = TOMOGRAM_GREY[1]
    rows = {}
    for name in ("tomo.tif", "tomo.rec"):
        acq = tmp_path / f"acq-{name}"
        acq.mkdir()
        if name.endswith(".tif"):
            write_volume_tiff(acq / name, vol, voxel_size_nm=(2.0, 1.0, 1.0))
        else:
            # IMOD's unsigned bytes; voxel size (x, y, z) in Å
            _write(acq / name, vol.view(np.int8), voxel_size_a=(10.0, 10.0, 20.0))
            _patch_header(acq / name, 152, "ii", 1146047817, 0)
        assert list_inputs(acq, "tomogram") == [acq / name]  # found by the default patterns
        summary = replay(acq, tmp_path / f"out-{name}", kind="tomogram", model=tomo_model)
        assert (summary.done, summary.quarantined, summary.exit_status) == (1, 0, 0)
        rows[name] = ds.dataset(tmp_path / f"out-{name}" / "volumes",
                                format="parquet").to_table().to_pylist()[0]
    tif, rec = rows["tomo.tif"], rows["tomo.rec"]
    assert rec["status"] == "ok" and rec["source"] == str(tmp_path / "acq-tomo.rec" / "tomo.rec")
    # what names the file, when it came and what it cost; everything measured is equal
    differ = {"source", "source_sha256", "mask_path", "batch_id", "processed_at", "file_mtime",
              "file_size_bytes", "acquisition", "acquired_at", "detected_at"}
    same = {k: v for k, v in tif.items()
            if k not in differ and not k.endswith(("_s", "_ms"))}
    assert same == {k: rec[k] for k in same}
    assert rec["voxel_size_z_nm"] == pytest.approx(2.0)
    assert rec["solid_fraction"] == pytest.approx(8 * 25 * 30 / vol.size)


def test_default_patterns_take_mrc_names_by_kind(tmp_path):
    from nwwatch.service.replay import list_inputs

    for name in ("a.tif", "b.MRC", "c.rec", "d.mrcs", "e.Rec", "f.st"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_inputs(tmp_path, "tomogram")] == [
        "a.tif", "b.MRC", "c.rec", "e.Rec"]
    assert [p.name for p in list_inputs(tmp_path, "insitu")] == ["a.tif", "b.MRC", "d.mrcs"]


def test_an_extended_header_size_is_checked_before_anything_is_allocated(tmp_path):
    """Was: mrcfile allocated and read the declared extended header (nsymbt) with the header,
    2 GiB for a corrupt 1 kB file: a MemoryError under a memory limit, not an InputError."""
    import subprocess
    import sys

    path = _write(tmp_path / "ext.mrc", np.ones((3, 4, 5), np.float32))
    _patch_header(path, 92, "i", 2**31 - 1)
    script = (
        "import resource, sys\n"
        "from nwwatch.io import InputError, inspect_tiff\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    inspect_tiff(sys.argv[1])\n"
        "except InputError as exc:\n"
        "    print(type(exc).__name__, exc)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"TruncatedTiffError {path}: MRC data cut short"), proc.stdout
    _patch_header(path, 92, "i", -8)
    with pytest.raises(TruncatedTiffError,
                       match=r"ext.mrc: .*corrupt.*extended header of -8 bytes"):
        read_volume(path)


def test_a_stack_of_volumes_is_not_read_as_one_tomogram(tmp_path):
    """Was: a volume stack (space group 401, 2 volumes of 3 sections) read as one tomogram of
    6 slices, the second volume stacked under the first."""
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    path = tmp_path / "stack.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)  # 4-D: mrcfile writes nz 6, mz 3, ispg 401
        mrc.voxel_size = 10.0
    with pytest.raises(UnsupportedLayoutError,
                       match=r"stack.mrc: a stack of volumes .*6 sections of 3 per volume"):
        read_volume(path)
    frames = read_frames(path)  # each section an image, as for any volume
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), data.reshape(6, 4, 5))


def test_a_tomogram_data_folder_takes_its_unlabeled_volume_as_the_reconstruction(tmp_path):
    """A DATA folder's labeled slice is normalised with the range of the DATA/unlabeled/
    volume that holds it, which may be the reconstruction itself (.rec): it is found, scored
    as its TIFF twin is, and its slices are unlabeled training data."""
    import tifffile
    from onnx_models import build_threshold_model

    from nwwatch.evaluate import evaluate_folder
    from nwwatch.io.volumeranges import VolumeRanges
    from nwwatch.synth.tomogram import generate_tomogram
    from training.data import load_folder

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    model = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    with_tiff = evaluate_folder(model, root)
    volume = tifffile.imread(root / "unlabeled" / "volume.tif")
    (root / "unlabeled" / "volume.tif").unlink()
    _write(root / "unlabeled" / "volume.rec", volume, voxel_size_a=10.0)

    (image_path,) = (root / "images").iterdir()
    found, _ = VolumeRanges(root).locate(image_path, tifffile.imread(image_path))
    assert found == root / "unlabeled" / "volume.rec"
    with_rec = evaluate_folder(model, root)
    np.testing.assert_array_equal(with_rec.metrics.iou, with_tiff.metrics.iou)
    assert len(load_folder(root).unlabeled) == 32  # its slices are training data too


@pytest.mark.parametrize("cell_z_a, mz", [(0.0, 1), (42.0, 0)])
def test_a_frames_pixel_size_needs_only_its_x_and_y(tmp_path, cell_z_a, mz):
    """A single image or movie stack calibrated in x and y but not along z (cell z 0, or no
    sampling mz) is a calibrated frame: the sections' spacing is no part of it."""
    path = _write(tmp_path / "image.mrc", np.arange(64 * 48, dtype=np.uint16).reshape(48, 64),
                  voxel_size_a=(8.0, 8.0, 1.0))
    _patch_header(path, 48, "f", cell_z_a)  # cella z (bytes 40-51 hold x, y, z)
    _patch_header(path, 36, "i", mz)  # mz
    (frame,) = read_frames(path)
    assert frame.pixel_size_nm == pytest.approx(0.8)
    assert read_volume(path).voxel_size_nm is None  # a volume needs all three


def test_a_movie_stack_replayed_as_a_tomogram_gets_the_series_note(tmp_path):
    """A SerialEM movie (.mrcs, space group 0) replayed with --kind tomogram is segmented as
    one volume, as asked, and the summary names it as a TIFF time series is named; a
    reconstruction written with space group 0 under another name gets no such note."""
    from onnx_models import build_threshold_model

    from nwwatch.service.replay import replay

    onnx = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    rng = np.random.default_rng(0)
    stack = (rng.random((6, 48, 48)) * 200).astype(np.int16)
    for name in ("movie.mrcs", "tomo.rec"):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        with mrcfile.new(folder / name) as mrc:
            mrc.header.ispg = 0  # a stack of images
            mrc.set_data(stack)
        assert inspect_tiff(folder / name).axes == "IYX"
        s = replay(folder / name, tmp_path / f"out-{name}", kind="tomogram", model=onnx)
        assert s.done == 1
        notes = [line for line in s.lines() if "declares its pages as time frames" in line]
        if name == "movie.mrcs":
            assert s.series_like == [folder / name]
            assert len(notes) == 1 and "--kind insitu" in notes[0], s.lines()
        else:
            assert s.series_like == [] and notes == [], s.lines()


def test_sections_far_apart_against_the_pixel_size_are_read_with_a_warning(tmp_path):
    """A stack exported with its cell's Z spanning the whole stack (Amira's segmentations:
    sections 388 nm apart for 1.24 nm pixels) was read without a word, and the volume
    metrics came out in such voxels."""
    from structlog.testing import capture_logs

    data = np.zeros((4, 8, 8), np.uint8)
    far = _write(tmp_path / "stack.mrc", data, voxel_size_a=(12.4, 12.4, 3880.0))
    with capture_logs() as logs:
        assert read_volume(far).voxel_size_nm == pytest.approx((388.0, 1.24, 1.24))
    (warning,) = [e for e in logs if e["event"] == "io.voxel_depth_implied"]
    assert warning["path"] == str(far) and "313 times the pixel size" in warning["reason"]
    # a binned or thick-sectioned but plausible depth is read silently
    near = _write(tmp_path / "tomo.rec", data, voxel_size_a=(12.4, 12.4, 24.8))
    with capture_logs() as logs:
        assert read_volume(near).voxel_size_nm == pytest.approx((2.48, 1.24, 1.24))
    assert not [e for e in logs if e["event"] == "io.voxel_depth_implied"]


def test_an_implausible_pixel_size_is_ignored_with_a_warning_as_for_tiff(tmp_path):
    from structlog.testing import capture_logs

    path = _write(tmp_path / "big.mrc", np.zeros((1, 8, 8), np.float32),
                  voxel_size_a=(5e5, 5e5, 5e5))  # 50 µm
    with capture_logs() as logs:
        inspect_tiff(path)  # the service's check first: the warning is the read's, once
        (frame,) = read_frames(path)
    assert frame.pixel_size_nm is None
    assert sorted(e["axis"] for e in logs if e["event"] == "io.pixel_size_ignored") == [
        "x", "y", "z"]
    # no calibration at all (a zero cell) is said nowhere
    plain = _write(tmp_path / "plain.mrc", np.zeros((1, 8, 8), np.float32))
    with capture_logs() as logs:
        assert read_frames(plain)[0].pixel_size_nm is None
    assert not [e for e in logs if e["event"] == "io.pixel_size_ignored"]


def test_a_header_of_1_angstrom_on_every_axis_is_no_calibration(tmp_path):
    """IMOD and other writers set the cell to the sample counts when no pixel size is known:
    read as 0.1 nm voxels, a tomogram's volumes came out 1000 times too small, unsaid."""
    from structlog.testing import capture_logs

    data = np.zeros((4, 8, 8), np.int16)
    unset = _write(tmp_path / "tomo.rec", data, voxel_size_a=1.0)
    with capture_logs() as logs:
        assert read_volume(unset).voxel_size_nm is None
    (warning,) = [e for e in logs if e["event"] == "io.pixel_size_ignored"]
    assert warning["path"] == str(unset) and "alterheader -PixelSize" in warning["reason"]
    assert read_frames(_write(tmp_path / "frame.mrc", data[:1], voxel_size_a=1.0))[
        0].pixel_size_nm is None
    # 1 Angstrom on one axis only is a calibration
    calibrated = _write(tmp_path / "movie.mrcs", data, voxel_size_a=(4.2, 4.2, 1.0))
    assert read_volume(calibrated).voxel_size_nm == pytest.approx((0.1, 0.42, 0.42))


def test_a_stack_read_in_chunks_warns_about_its_pixel_size_once_as_read_whole(tmp_path):
    # the service reads a long stack a few pages at a time: its header's pixel sizes (and
    # the .mdoc) are checked with the first chunk, not once more per chunk
    from structlog.testing import capture_logs

    from nwwatch.io import read_frame_chunks

    data = np.arange(6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8)
    path = _write(tmp_path / "big.mrc", data, voxel_size_a=(5e5, 5e5, 5e5))  # 50 µm
    with capture_logs() as logs:
        chunks = list(read_frame_chunks(path, 2))
    assert [len(chunk) for chunk in chunks] == [2, 2, 2]
    whole = read_frames(path)
    for got, want in zip([f for chunk in chunks for f in chunk], whole, strict=True):
        assert (got.index, got.pixel_size_nm, got.acquired_at, got.acquired_at_source) == (
            want.index, want.pixel_size_nm, want.acquired_at, want.acquired_at_source)
        np.testing.assert_array_equal(got.image, want.image)
    assert sorted(e["axis"] for e in logs if e["event"] == "io.pixel_size_ignored") == [
        "x", "y", "z"]


@pytest.mark.parametrize("voxel_a, nx", [(4.603, 20), (1.2827, 20), (4.603, 4096),
                                         (1000 / 4096, 64)])
def test_a_float32_cell_gives_the_spacing_its_writer_set(tmp_path, voxel_a, nx):
    """The cell (voxel size times the samples) is float32: 4.603 Å came out as
    0.46030001640319823 nm, and over 4096 samples (stored 18853.889) as 0.4603000244."""
    path = tmp_path / "cal.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ones((3, 2, nx), np.int16))
        mrc.voxel_size = voxel_a
    expected = round(voxel_a / 10, 12)
    assert {f.pixel_size_nm for f in read_frames(path)} == {expected}  # exactly
    assert read_volume(path).voxel_size_nm == (expected,) * 3


# --- SerialEM's .mdoc beside an MRC file ----------------------------------------------------

#: As SerialEM writes it for a stack of separately saved images (Record, then Save to the open
#: file): global keys, the file's titles as [T] sections, then one [ZValue] section an image.
_MDOC_HEAD = """PixelSpacing = 4.603
ImageFile = {name}
ImageSize = 20 16
DataMode = 6

[T = SerialEM: Talos in-situ holder                            05-Dec-26  14:22:29    ]

[T =     Tilt axis angle = 85.3, binning = 2  spot = 8  camera = 0]
"""
_MDOC_SECTION = """
[ZValue = {z}]
TiltAngle = 0.000999877
StagePosition = 20.7936 155.287
StageZ = 163.803
Magnification = 105000
Intensity = 0.00900259
ExposureDose = 0
PixelSpacing = {pixel}
SpotSize = 8
Defocus = 2.68083
ImageShift = -0.0108126 -0.121079
RotationAngle = 175.3
ExposureTime = 0.8
Binning = 2
CameraIndex = 0
DividedBy2 = 0
MagIndex = 31
MinMaxMean = 5 1403 623.699
TargetDefocus = -4
DateTime = {when}
TimeStamp = {stamp}
"""


def _serialem_stack(path: Path, n: int, voxel_size_a=None) -> np.ndarray:
    data = np.random.default_rng(3).integers(0, 4000, (n, 16, 20)).astype(np.uint16)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.set_image_stack()
        if voxel_size_a is not None:
            mrc.voxel_size = voxel_size_a
    return data


def _mdoc(path: Path, whens: list[str], pixel: str = "4.603", head: str = _MDOC_HEAD) -> Path:
    text = head.format(name=path.name) + "".join(
        _MDOC_SECTION.format(z=z, when=when, pixel=pixel, stamp=218_000_000 + z)
        for z, when in enumerate(whens))
    mdoc = path.with_name(path.name + ".mdoc")
    mdoc.write_bytes(text.replace("\n", "\r\n").encode())  # written on Windows
    return mdoc


def test_a_serialem_stack_takes_each_images_time_from_its_mdoc(tmp_path, local_tz):
    from datetime import UTC, datetime

    from structlog.testing import capture_logs

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 3, voxel_size_a=(4.2, 4.2, 4.2))
    # SerialEM before 4.1 wrote two-digit years, since then four; local time of its PC
    _mdoc(path, ["05-Dec-26  14:22:31", "05-Dec-2026  14:22:33", "05-Dec-2026  14:23:02"])
    frames = read_frames(path)
    assert [f.acquired_at_source for f in frames] == ["metadata"] * 3
    assert [f.acquired_at for f in frames] == [
        datetime(2026, 12, 5, 13, 22, 31, tzinfo=UTC),
        datetime(2026, 12, 5, 13, 22, 33, tzinfo=UTC),
        datetime(2026, 12, 5, 13, 23, 2, tzinfo=UTC)]
    # the header's calibration comes first: an mdoc whose every section gives another size
    # (4.603 Å; a header recalibrated since, or not this file's mdoc) is not read over it,
    # but said, naming both files and the sections
    assert all(f.pixel_size_nm == pytest.approx(0.42) for f in frames)
    _mdoc(path, ["05-Dec-26  14:22:31"] * 3, pixel="5e6")
    with capture_logs() as logs:
        assert [f.pixel_size_nm for f in read_frames(path)] == pytest.approx([0.42] * 3)
    (warning,) = logs
    assert (warning["event"], warning["source"], warning["sections"]) == (
        "io.pixel_size_ignored", "mdoc", "0-2")
    assert warning["path"] == str(path) and f"{path}.mdoc" in warning["reason"]
    assert "the header's size is used" in warning["reason"]
    # the same size written to fewer digits, or as float32 in the header: no warning
    _mdoc(path, ["05-Dec-26  14:22:31"] * 3, pixel="4.20001")
    with capture_logs() as logs:
        read_frames(path)
    assert logs == []


def test_sections_an_mdoc_says_were_saved_at_another_magnification_get_their_size(
        tmp_path, local_tz):
    # SerialEM's header holds one pixel size (the first image's); the magnification changed
    # after section 2 and the mdoc's sections 3-5 say so. Every frame got the header's size
    # without a word: the later frames' nm values half what they are (a TIFF's pages each
    # get their own resolution tags' size).
    from structlog.testing import capture_logs

    from nwwatch.io import FrameReader, read_frame_at

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 6, voxel_size_a=(7.6053, 7.6053, 7.6053))
    mdoc = _mdoc(path, [f"05-Dec-2026  14:22:{31 + z:02d}" for z in range(6)], pixel="7.6053")
    text = mdoc.read_bytes().decode()
    head, *sections = text.split("[ZValue")
    sections[3:] = [part.replace("PixelSpacing = 7.6053", "PixelSpacing = 15.2106")
                    for part in sections[3:]]
    mdoc.write_bytes("[ZValue".join([head, *sections]).encode())
    expected = [0.76053] * 3 + [1.52106] * 3
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [f.pixel_size_nm for f in frames] == pytest.approx(expected, rel=1e-6)
    (warning,) = logs
    assert (warning["event"], warning["source"], warning["sections"]) == (
        "io.pixel_size_ignored", "mrc", "3-5")
    assert warning["path"] == str(path) and f"{path}.mdoc" in warning["reason"]
    assert "1.52106 nm" in warning["reason"] and "0.76053 nm" in warning["reason"]
    # every reader gives the same sizes, and says it once a file
    assert_chunks_are_the_whole_read(path, [1, 4], [2, 3])
    with FrameReader(path) as reader:
        assert [reader.frame(i).pixel_size_nm for i in (5, 0)] == pytest.approx(
            [1.52106, 0.76053], rel=1e-6)
    assert read_frame_at(path, 4).pixel_size_nm == pytest.approx(1.52106, rel=1e-6)


def test_the_mdoc_gives_the_pixel_size_a_header_without_calibration_lacks(tmp_path, local_tz):
    from structlog.testing import capture_logs

    path = tmp_path / "movie.mrcs"
    _serialem_stack(path, 2)  # cell 0: no calibration in the header
    _mdoc(path, ["05-Dec-26  14:22:31"] * 2, pixel="9.206")  # binned by 2: 2 x 4.603 Å
    assert [f.pixel_size_nm for f in read_frames(path)] == pytest.approx([0.9206] * 2)
    # a diffraction pattern's PixelSpacing is in 1/Å: no length
    text = path.with_name("movie.mrcs.mdoc").read_text()
    path.with_name("movie.mrcs.mdoc").write_text(
        text.replace("Magnification = 105000", "CameraLength = 520"))
    assert [f.pixel_size_nm for f in read_frames(path)] == [None, None]
    # an implausible one is ignored with the warning every calibration gets
    _mdoc(path, ["05-Dec-26  14:22:31"] * 2, pixel="5e6")
    with capture_logs() as logs:
        assert [f.pixel_size_nm for f in read_frames(path)] == [None, None]
    assert [e["source"] for e in logs if e["event"] == "io.pixel_size_ignored"] == ["mdoc"]


def test_an_mdoc_pixel_spacing_in_angstrom_is_its_decimal_in_nm(tmp_path, local_tz):
    path = tmp_path / "movie.mrcs"
    _serialem_stack(path, 2)  # no calibration in the header
    _mdoc(path, ["05-Dec-26  14:22:31"] * 2, pixel="1.7")  # 1.7 / 10 is 0.16999999999999998
    assert [f.pixel_size_nm for f in read_frames(path)] == [0.17, 0.17]


@pytest.mark.parametrize("whens, reason", [
    (["05-Dec-26  14:22:31"] * 2, "2 sections"),  # the stack holds 3: not its mdoc
    (["05-Dec-26  14:22:31", "05-Dec-26  14:22:32", "31-Foo-26  14:22:33"], "31-Foo-26"),
    (["05-Dec-26  14:22:31", "05-Dec-26  14:22:32", "01-Jan-1970  00:00:00"], "1970"),
])
def test_an_mdoc_that_does_not_fit_the_stack_gives_the_mtime_with_a_warning(
        tmp_path, local_tz, whens, reason):
    from structlog.testing import capture_logs

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 3)
    mdoc = _mdoc(path, whens)
    with capture_logs() as logs:
        frames = read_frames(path)
    assert [f.acquired_at_source for f in frames] == ["mtime"] * 3
    (warning,) = [e for e in logs if e["event"] == "io.times_ignored"]
    assert warning["path"] == str(path) and str(mdoc) in warning["reason"]
    assert reason in warning["reason"], warning["reason"]
    # an mdoc of this file whose times cannot be read still gives its pixel size
    expected = None if reason == "2 sections" else pytest.approx(0.4603)
    assert [f.pixel_size_nm for f in frames] == [expected] * 3


def test_an_unreadable_mdoc_gives_the_mtime_with_a_warning(tmp_path, local_tz):
    from structlog.testing import capture_logs

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 2)
    mdoc = path.with_name("heating.mrc.mdoc")
    mdoc.mkdir()  # not a file: not waited on, not read
    with capture_logs() as logs:
        assert [f.acquired_at_source for f in read_frames(path)] == ["mtime"] * 2
    (warning,) = [e for e in logs if e["event"] == "io.times_ignored"]
    assert str(mdoc) in warning["reason"] and "not a regular file" in warning["reason"]
    mdoc.rmdir()
    mdoc.write_bytes(b"\x00\xff" * 100)  # no autodoc text
    with capture_logs() as logs:
        assert [f.acquired_at_source for f in read_frames(path)] == ["mtime"] * 2
    assert [e["event"] for e in logs] == ["io.times_ignored"]


def test_a_frame_stacks_mdoc_gives_every_frame_the_exposures_time(tmp_path, local_tz):
    from datetime import UTC, datetime

    path = tmp_path / "frames_001.mrc"
    _serialem_stack(path, 4)
    frame_set = ("T = SerialEM: Krios Camera -> 0:K3         05-Dec-26  14:22:29    \n"
                 "Voltage = 300\n\n[FrameSet = 0]\nPixelSpacing = 1.2827\nBinning = 0.5\n"
                 "NumSubFrames = 4\nDateTime = 05-Dec-26  14:22:31\n\n"
                 # a tilt series within the exposure: tilts of its frames, not sections
                 "[ZValue = 0]\nTiltAngle = 33\nFrameTSStartEndFrames = 0 1\n\n"
                 "[ZValue = 1]\nTiltAngle = 36\nFrameTSStartEndFrames = 2 3\n")
    path.with_name("frames_001.mrc.mdoc").write_text(frame_set)
    frames = read_frames(path)
    assert {(f.acquired_at, f.acquired_at_source) for f in frames} == {
        (datetime(2026, 12, 5, 13, 22, 31, tzinfo=UTC), "metadata")}
    assert [f.pixel_size_nm for f in frames] == pytest.approx([0.12827] * 4)
    # the mdoc of a stack of another frame count is not this file's
    path.with_name("frames_001.mrc.mdoc").write_text(frame_set.replace("= 4", "= 8"))
    assert {f.acquired_at_source for f in read_frames(path)} == {"mtime"}


def test_the_mdoc_is_no_input_and_its_stack_replays_with_its_times(tmp_path, local_tz):
    from datetime import UTC, datetime

    from servicekit import paint_insitu

    from nwwatch.service import replay
    from nwwatch.service.replay import list_inputs

    acq = tmp_path / "acq"
    acq.mkdir()
    path = acq / "heating.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.stack([paint_insitu(100.0, size=64), paint_insitu(120.0, size=64)]
                              ).astype(np.float32))
        mrc.set_image_stack()
    _mdoc(path, ["05-Dec-26  14:22:31", "05-Dec-26  14:22:33"], pixel="2.5")
    left: list[Path] = []
    assert list_inputs(acq, "insitu", unread=left) == [path] and left == []
    summary = replay(acq, tmp_path / "out", kind="insitu", model=model(tmp_path))
    assert (summary.done, summary.quarantined, summary.exit_status) == (1, 0, 0)
    assert not any("left out" in line for line in summary.lines())
    rows = sorted(ds.dataset(tmp_path / "out" / "frames", format="parquet").to_table()
                  .to_pylist(), key=lambda r: r["frame"])
    assert [(r["acquired_at"], r["acquired_at_source"], r["pixel_size_nm"]) for r in rows] == [
        (datetime(2026, 12, 5, 13, 22, 31, tzinfo=UTC), "metadata", 0.25),
        (datetime(2026, 12, 5, 13, 22, 33, tzinfo=UTC), "metadata", 0.25)]
    # named with its stack by a shell glob: read with it, passed over without a word
    again = replay([acq / "heating.mrc.mdoc", acq / "heating.mrc"], tmp_path / "out2",
                   kind="insitu", model=model(tmp_path))
    assert (again.done, again.quarantined, again.exit_status) == (1, 0, 0)
    assert again.not_tiff == [] and again.mdocs == []
    assert not any(".mdoc" in line for line in again.lines()), again.lines()
    # named alone: skipped, saying what it is and what to give instead
    alone = replay(acq / "heating.mrc.mdoc", tmp_path / "out3", kind="insitu",
                   model=model(tmp_path))
    assert (alone.files, alone.quarantined, alone.exit_status) == (0, 0, 0)
    assert alone.not_tiff == [] and alone.mdocs == [acq / "heating.mrc.mdoc"]
    lines = alone.lines()
    assert not any("neither TIFF" in line for line in lines), lines
    assert (f"named file skipped: {acq / 'heating.mrc.mdoc'}: SerialEM metadata (an .mdoc), "
            "read with its stack heating.mrc, not an image: give heating.mrc") in "\n".join(lines)
    assert lines[-1] == (f"replay found no input files: {acq / 'heating.mrc.mdoc'} is SerialEM "
                         "metadata, not an image (above)")


def test_an_mdoc_is_refused_as_metadata_naming_its_stack(tmp_path):
    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 2)
    mdoc = _mdoc(path, ["05-Dec-26  14:22:31"] * 2)
    for read in (inspect_tiff, read_frames, read_volume):
        with pytest.raises(NotATiffError, match=r"heating\.mrc\.mdoc: SerialEM metadata \(an "
                                                r"\.mdoc\), read with its stack heating\.mrc, "
                                                r"not an image: give heating\.mrc"):
            read(mdoc)
    path.unlink()
    with pytest.raises(NotATiffError, match=r"its stack heating\.mrc, which is not beside it"):
        read_frames(mdoc)


def test_measure_passes_over_an_mdoc_named_with_its_stack_and_refuses_it_alone(tmp_path):
    from click.testing import CliRunner

    from nwwatch.measure.cli import measure

    acq = tmp_path / "acq"
    acq.mkdir()
    path = acq / "labels.mrc"
    labels = np.zeros((2, 48, 48), np.int16)  # label pages: class ids 0, 1, 2
    labels[:, 30:, 20:28] = 1
    labels[:, 18:30, 16:32] = 2
    with mrcfile.new(path) as mrc:
        mrc.set_data(labels)
        mrc.set_image_stack()
    _mdoc(path, ["05-Dec-26  14:22:31", "05-Dec-26  14:22:33"])
    glob = sorted(str(p) for p in acq.iterdir())  # what the shell makes of acq/*
    assert glob[1].endswith(".mdoc")
    result = CliRunner().invoke(measure, [*glob, "--out", str(tmp_path / "a.parquet")])
    assert result.exit_code == 0, result.output
    assert "wrote 2 row(s)" in result.output and "mdoc" not in result.output
    result = CliRunner().invoke(measure, [glob[1], "--out", str(tmp_path / "b.parquet")])
    assert result.exit_code == 1
    assert (f"skipped {glob[1]}: SerialEM metadata (an .mdoc), read with its stack "
            "labels.mrc, not an image: give labels.mrc") in result.output
    assert "measure reads TIFF" not in result.output


def test_label_passes_over_an_mdoc_named_with_its_stack_and_refuses_it_alone(tmp_path):
    from nwwatch.label.frames import frame_refs

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 2)
    mdoc = _mdoc(path, ["05-Dec-26  14:22:31"] * 2)
    refs = frame_refs([path, mdoc])  # in either order, as a shell glob gives them
    assert [(r.path, r.page) for r in refs] == [(path, 0), (path, 1)]
    assert [(r.path, r.page) for r in frame_refs([mdoc, path])] == [(path, 0), (path, 1)]
    with pytest.raises(NotATiffError, match=r"read with its stack heating\.mrc, not an image: "
                                            r"give heating\.mrc \(its frames get this file's "
                                            r"times and pixel size\)$"):
        frame_refs([mdoc])


def test_no_watch_takes_an_mdoc_whatever_its_patterns(tmp_path):
    """A watch whose patterns take every name quarantined the .mdoc beside each MRC file
    as no TIFF."""
    from nwwatch.service.config import WatchConfig
    from nwwatch.service.watcher import matches, scan

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 2)
    _mdoc(path, ["05-Dec-26  14:22:31"] * 2)
    for patterns in (("*",), ("*.mdoc", "*.mrc")):
        watch = WatchConfig(path=tmp_path, kind="insitu", patterns=patterns)
        assert list(scan(watch)) == [path]
        assert not matches("heating.mrc.mdoc", watch) and not matches("x.MDOC", watch)
