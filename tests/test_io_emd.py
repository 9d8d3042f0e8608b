"""Velox EMD files (nwwatch.io.emd), written with h5py as Velox lays them out (Data/Image/<uuid>
with Data (H, W, N) and per-frame JSON Metadata), read through the same readers as TIFF:
pixel types, calibration, frame times, the choice among image groups, files being written
or damaged, and the replay of an EMD series giving the rows of its TIFF twin."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pyarrow.dataset as ds
import pytest
from servicekit import T0, model, paint_insitu

from nwwatch.io import (
    AnisotropicPixelsError,
    EmptyFileError,
    InputError,
    NotARegularFileError,
    TruncatedTiffError,
    UnsupportedDtypeError,
    UnsupportedLayoutError,
    inspect_tiff,
    read_frames,
    read_volume,
)
from nwwatch.io import emd as emd_module

_VERSION = json.dumps({"version": "11", "format": "Velox"})


def _metadata(detector: str = "BM-Ceta", pixel_m: float | None = 2.5e-10,
              unit: str = "m", height_m: float | None = None, stamp_us: int | None = None,
              start_s: int | None = None, frame_time_s: float | None = None) -> dict:
    """One frame's metadata as Velox writes it (numbers as text)."""
    meta: dict = {"Core": {"MetadataDefinitionVersion": "7.9"},
                  "BinaryResult": {"Detector": detector, "AcquisitionUnit": "CameraImage"}}
    if pixel_m is not None:
        meta["BinaryResult"]["PixelSize"] = {
            "width": repr(pixel_m), "height": repr(pixel_m if height_m is None else height_m)}
        meta["BinaryResult"]["PixelUnitX"] = meta["BinaryResult"]["PixelUnitY"] = unit
    if start_s is not None:
        meta["Acquisition"] = {"AcquisitionStartDatetime": {"DateTime": str(start_s)},
                               "AcquisitionDatetime": {"DateTime": "0"}}
    if frame_time_s is not None:
        meta["Scan"] = {"FrameTime": repr(frame_time_s)}
    if stamp_us is not None:
        meta["CustomProperties"] = {
            f"Detectors[{detector}].TimeStamp": {"type": "int64", "value": str(stamp_us)},
            f"Detectors[{detector}].FrameID": {"type": "long", "value": "0"}}
    return meta


def _add_image(hdf: h5py.File, frames: np.ndarray, metas: list[dict], *,
               chunked: bool = True, compression: str | None = None) -> str:
    """An image group of ``frames`` (N, H, W): Data stored (H, W, N), one chunk a frame as
    Velox writes it, and Metadata (L, N) of null-padded JSON texts."""
    group = hdf.require_group("Data/Image").create_group(uuid.uuid4().hex)
    data = np.moveaxis(frames, 0, 2)
    chunks = (*data.shape[:2], 1) if chunked else None
    group.create_dataset("Data", data=data, chunks=chunks, compression=compression)
    texts = [json.dumps(m, indent=4).encode() for m in metas]
    column = max(map(len, texts)) + 100
    raw = np.zeros((column, len(texts)), np.uint8)
    for i, text in enumerate(texts):
        raw[:len(text), i] = np.frombuffer(text, np.uint8)
    group.create_dataset("Metadata", data=raw, chunks=(column, 1))
    group.create_dataset("FrameLookupTable", data=np.arange(len(texts), dtype=np.uint32))
    return f"Data/Image/{group.name.rsplit('/', 1)[1]}"


def _write(path: Path, frames: np.ndarray, metas: list[dict] | None = None, **kw) -> Path:
    """A Velox EMD file of one image series."""
    metas = metas or [_metadata(stamp_us=1_700_000_000_000_000 + i * 250_000)
                      for i in range(len(frames))]
    with h5py.File(path, "w") as hdf:
        hdf.create_dataset("Version", data=[_VERSION.encode()], dtype=h5py.string_dtype())
        _add_image(hdf, frames, metas, **kw)
        hdf.create_group("Data/Text")
    return path


def _stack(n: int = 3, h: int = 6, w: int = 5, dtype=np.uint16) -> np.ndarray:
    return (np.arange(n * h * w) % 250).reshape(n, h, w).astype(dtype)


def test_a_series_reads_as_frames_with_pixel_size_and_each_frames_time(tmp_path):
    frames = _stack()
    path = _write(tmp_path / "series.emd", frames)
    info = inspect_tiff(path)
    assert (info.n_pages, info.shape, info.axes, info.dtype, info.layout) == (
        3, (3, 6, 5), "IYX", np.uint16, "emd")
    assert info.declared_bytes == frames.nbytes
    read = read_frames(path)
    assert [f.index for f in read] == [0, 1, 2]
    for frame, expected in zip(read, frames, strict=True):
        assert frame.image.dtype == np.uint16 and frame.image.flags.c_contiguous
        np.testing.assert_array_equal(frame.image, expected)
        assert frame.pixel_size_nm == pytest.approx(0.25)
        assert frame.source == path and frame.acquired_at_source == "metadata"
    t0 = datetime.fromtimestamp(1_700_000_000, UTC)
    assert [f.acquired_at for f in read] == [t0 + timedelta(milliseconds=250 * i)
                                             for i in range(3)]
    one = read_frames(_write(tmp_path / "one.emd", frames[:1]))
    assert len(one) == 1 and inspect_tiff(tmp_path / "one.emd").axes == "YX"


@pytest.mark.parametrize("chunked", [True, False])
def test_frames_read_in_blocks_are_the_frames_stored(tmp_path, monkeypatch, chunked):
    """Data are read a block at a time (rows of every frame from contiguous storage, frames
    from chunked): with blocks smaller than a frame, every frame is still the stored one."""
    frames = np.random.default_rng(1).integers(0, 60000, (5, 33, 17)).astype(np.uint16)
    path = _write(tmp_path / "s.emd", frames, chunked=chunked,
                  compression="gzip" if chunked else None)
    monkeypatch.setattr(emd_module, "_BLOCK_BYTES", 3 * 17 * 5 * 2)
    np.testing.assert_array_equal(np.stack([f.image for f in read_frames(path)]), frames)


def _series_metadata(kind: str, n: int) -> list[dict]:
    """Per-frame metadata of each way an EMD file gives frame times and pixel sizes."""
    start = 1_650_000_000
    if kind == "stamps":  # a camera series, pixel size changed part way, one implausible
        return [_metadata(pixel_m=2.5e-10 if i < n // 2 else 5e-10 if i != n - 2 else 1.0,
                          stamp_us=(start + i) * 10**6 + 3) for i in range(n)]
    if kind == "scan":  # a STEM series: start + i * FrameTime
        return [_metadata(detector="HAADF", start_s=start, frame_time_s=0.75, pixel_m=1e-9)
                for _ in range(n)]
    if kind == "past_2200":  # a damaged FrameTime: every frame the start, with a warning
        return [_metadata(start_s=start, frame_time_s=1e12) for _ in range(n)]
    return [_metadata(pixel_m=None) for _ in range(n)]  # no time: the mtime


@pytest.mark.parametrize("storage", ["chunked_gzip", "contiguous", "chunks_of_3"])
@pytest.mark.parametrize("kind", ["stamps", "scan", "past_2200", "mtime"])
def test_chunks_and_one_frame_are_the_frames_read_whole(tmp_path, storage, kind):
    # the service and replay read a long series a chunk of frames at a time, the labelling
    # page one frame: the same images, indices, pixel sizes and times, warnings once a file
    from chunkkit import assert_chunks_are_the_whole_read

    n = 7
    frames = np.random.default_rng(2).integers(0, 60000, (n, 19, 16)).astype(np.uint16)
    path = tmp_path / "series.emd"
    metas = _series_metadata(kind, n)
    if storage == "chunks_of_3":  # chunks of several frames, not aligned with the reads
        with h5py.File(path, "w") as hdf:
            hdf.create_dataset("Version", data=[_VERSION.encode()], dtype=h5py.string_dtype())
            name = _add_image(hdf, frames, metas)
            del hdf[f"{name}/Data"]
            hdf.create_dataset(f"{name}/Data", data=np.moveaxis(frames, 0, 2),
                               chunks=(19, 8, 3), compression="lzf")
    else:
        _write(path, frames, metas, chunked=storage != "contiguous",
               compression="gzip" if storage == "chunked_gzip" else None)
    # contiguous storage interleaves the frames pixel by pixel: a chunk of them would cost a
    # pass over the whole dataset, so the series is read whole (after the memory check)
    whole = assert_chunks_are_the_whole_read(path, [1, 2, 3, 5, 7, 10], [0, 3, n - 1],
                                             by_page=storage != "contiguous")
    np.testing.assert_array_equal(np.stack([f.image for f in whole]), frames)
    assert len({f.acquired_at for f in whole}) == (1 if kind in ("past_2200", "mtime") else n)


def test_a_series_in_hdf5_chunks_of_many_frames_is_read_whole(tmp_path):
    # chunks deeper than MAX_FRAMES_PER_HDF5_CHUNK frames: each chunk of frames read apart
    # would decode them all again
    from chunkkit import assert_chunks_are_the_whole_read

    from nwwatch.io.emd import MAX_FRAMES_PER_HDF5_CHUNK

    n = MAX_FRAMES_PER_HDF5_CHUNK + 1
    frames = _stack(n=n, h=4, w=3)
    path = tmp_path / "deep.emd"
    with h5py.File(path, "w") as hdf:
        hdf.create_dataset("Version", data=[_VERSION.encode()], dtype=h5py.string_dtype())
        name = _add_image(hdf, frames, [_metadata(stamp_us=10**15 + i) for i in range(n)])
        del hdf[f"{name}/Data"]
        hdf.create_dataset(f"{name}/Data", data=np.moveaxis(frames, 0, 2), chunks=(4, 3, n))
    assert_chunks_are_the_whole_read(path, [8], [0, n - 1], by_page=False)


def test_a_chunk_decodes_only_its_own_frames(tmp_path):
    # frame 5's compressed chunk damaged: the frames before it are read, one at a time or a
    # chunk at a time, and the chunk holding it is bad input naming the file
    frames = _stack(n=8, h=24, w=24)
    path = _write(tmp_path / "s.emd", np.random.default_rng(0).integers(
        0, 999, frames.shape).astype(np.uint16), compression="gzip")
    with h5py.File(path, "r") as hdf:
        (name,) = hdf["Data/Image"]
        chunk = hdf[f"Data/Image/{name}/Data"].id.get_chunk_info_by_coord((0, 0, 5))
    with open(path, "r+b") as handle:
        handle.seek(chunk.byte_offset + 2)
        handle.write(b"\xff" * 16)
    from nwwatch.io import read_frame_at, read_frame_chunks

    assert read_frame_at(path, 4).index == 4
    with pytest.raises(TruncatedTiffError, match="s.emd: Data/Image/.*/Data could not be read"):
        read_frame_at(path, 5)
    chunks = read_frame_chunks(path, 3)
    assert [f.index for f in next(chunks)] == [0, 1, 2]
    with pytest.raises(TruncatedTiffError, match="s.emd: "):
        next(chunks)
    with pytest.raises(TruncatedTiffError, match="s.emd: "):
        read_frames(path)


def test_a_series_over_the_whole_read_limit_is_read_by_chunks_and_refused_whole(
        tmp_path, monkeypatch):
    from chunkkit import assert_read_by_chunks_past_the_whole_read_limit

    frames = _stack(n=6, h=16, w=16)
    assert_read_by_chunks_past_the_whole_read_limit(_write(tmp_path / "long.emd", frames),
                                                    frames, monkeypatch)


def test_a_series_read_whole_over_the_whole_read_limit_is_refused_before_the_memory_check(
        tmp_path, monkeypatch):
    # a series stored contiguously is read whole: one over MAX_FILE_BYTES was refused by the
    # service's memory check first ("raise MemoryMax", tried again with more memory), which
    # no memory helps
    import nwwatch.io as nio
    from nwwatch.io import ImageTooLargeError

    frames = _stack(n=6, h=16, w=16)
    path = _write(tmp_path / "long.emd", frames, chunked=False)
    monkeypatch.setattr(nio.limits, "MAX_FILE_BYTES", 2 * 16 * 16 * 2)
    with pytest.raises(ImageTooLargeError, match="for a file read whole"):
        next(nio.read_frame_chunks(
            path, 4, whole=lambda info: pytest.fail(f"{info.path}: memory checked first")))


@pytest.mark.parametrize("stored, returned", [
    ("u1", "u1"), ("u2", "u2"), ("u4", "f4"), ("i2", "i2"), ("i4", "f4"), ("f4", "f4"),
    ("f8", "f4"), ("i1", "i2"), ("f2", "f4"), (">u2", "u2")])
def test_pixel_types_are_read_as_one_of_the_supported_types(tmp_path, stored, returned):
    from nwwatch.io import SUPPORTED_DTYPES

    assert np.dtype(returned) in SUPPORTED_DTYPES
    frames = (np.arange(2 * 4 * 4).reshape(2, 4, 4) - 5).astype(stored)
    path = _write(tmp_path / "t.emd", frames)
    assert inspect_tiff(path).dtype == np.dtype(returned)
    for frame, expected in zip(read_frames(path), frames, strict=True):
        assert frame.image.dtype == np.dtype(returned)
        np.testing.assert_array_equal(frame.image, expected.astype(returned))


def test_complex_and_other_pixel_types_are_refused_naming_file_and_type(tmp_path):
    fft = np.zeros((1, 4, 4), [("realFloat", "<f4"), ("imagFloat", "<f4")])
    with pytest.raises(UnsupportedDtypeError,
                       match=r"fft.emd: Data/Image/\w+: pixel type complex \(realFloat, "
                             r"imagFloat\) is not supported"):
        inspect_tiff(_write(tmp_path / "fft.emd", fft))
    with pytest.raises(UnsupportedDtypeError, match=r"c.emd: .*complex \(complex64\)"):
        read_frames(_write(tmp_path / "c.emd", np.zeros((1, 4, 4), np.complex64)))
    with pytest.raises(UnsupportedDtypeError, match=r"big.emd: .*pixel type int64"):
        read_frames(_write(tmp_path / "big.emd", np.zeros((1, 4, 4), np.int64)))
    rgb = tmp_path / "rgb.emd"
    with h5py.File(rgb, "w") as hdf:
        hdf.create_dataset("Data/Image/abc/Data", data=np.zeros((4, 4, 3, 2), np.uint8))
    with pytest.raises(UnsupportedLayoutError, match=r"rgb.emd: .*shape \(4, 4, 3, 2\)"):
        inspect_tiff(rgb)


def test_calibration_units_and_anisotropic_pixels(tmp_path):
    frames = _stack(n=1)
    nm = _write(tmp_path / "nm.emd", frames, [_metadata(pixel_m=0.5, unit="nm")])
    assert read_frames(nm)[0].pixel_size_nm == pytest.approx(0.5)
    # a diffraction pattern's pixel is 1/m: not a length, no calibration
    reciprocal = _write(tmp_path / "dp.emd", frames, [_metadata(pixel_m=1e8, unit="1/m")])
    assert read_frames(reciprocal)[0].pixel_size_nm is None
    bare = _write(tmp_path / "bare.emd", frames, [_metadata(pixel_m=None)])
    assert read_frames(bare)[0].pixel_size_nm is None
    aniso = _write(tmp_path / "aniso.emd", frames, [_metadata(pixel_m=1e-9, height_m=2e-9)])
    with pytest.raises(AnisotropicPixelsError,
                       match="aniso.emd: pixel size x 1 nm differs from y 2 nm"):
        read_frames(aniso)


def test_frame_times_fall_back_to_the_scan_start_then_to_the_mtime(tmp_path):
    frames = _stack()
    start = 1_650_000_000
    stem = [_metadata(detector="HAADF", start_s=start, frame_time_s=1.5) for _ in range(3)]
    times = [f.acquired_at for f in read_frames(_write(tmp_path / "stem.emd", frames, stem))]
    t0 = datetime.fromtimestamp(start, UTC)
    assert times == [t0, t0 + timedelta(seconds=1.5), t0 + timedelta(seconds=3)]
    # a time stamp on some frames only: the start for all, not a mix of sources
    mixed = [_metadata(start_s=start, stamp_us=(start + 9) * 10**6)] + [
        _metadata(start_s=start) for _ in range(2)]
    assert {f.acquired_at for f in read_frames(_write(tmp_path / "m.emd", frames, mixed))} \
        == {t0}
    none = _write(tmp_path / "none.emd", frames, [_metadata(start_s=0) for _ in range(3)])
    os.utime(none, (1_600_000_000, 1_600_000_000))
    read = read_frames(none)
    assert {(f.acquired_at, f.acquired_at_source) for f in read} == {
        (datetime.fromtimestamp(1_600_000_000, UTC), "mtime")}


@pytest.mark.parametrize("frame_time_s", [1e12, 1e300, 3e9])
def test_a_frame_time_that_puts_frames_past_2200_gives_every_frame_the_start(tmp_path,
                                                                           frame_time_s):
    # a damaged Scan.FrameTime: start + i * FrameTime raised OverflowError out of the read
    # (the service retried the file as an unexpected error, then quarantined it), or gave
    # frames in the 23rd century
    from structlog.testing import capture_logs

    start = 1_650_000_000
    metas = [_metadata(detector="HAADF", start_s=start, frame_time_s=frame_time_s)
             for _ in range(3)]
    path = _write(tmp_path / "scan.emd", _stack(), metas)
    with capture_logs() as logs:
        read = read_frames(path)
    t0 = datetime.fromtimestamp(start, UTC)
    assert [(f.acquired_at, f.acquired_at_source) for f in read] == [(t0, "metadata")] * 3
    (warning,) = [e for e in logs if e["event"] == "io.times_ignored"]
    assert warning["path"] == str(path) and "Scan.FrameTime" in warning["reason"]


def test_the_image_series_is_chosen_among_image_groups_or_the_file_refused(tmp_path):
    series, survey = _stack(n=4), _stack(n=1, h=8, w=8)
    path = tmp_path / "two.emd"
    with h5py.File(path, "w") as hdf:
        _add_image(hdf, survey, [_metadata(detector="HAADF")])
        _add_image(hdf, series, [_metadata(detector="BM-Ceta") for _ in range(4)])
        fft = np.zeros((4, 4, 1), [("realFloat", "<f4"), ("imagFloat", "<f4")])
        hdf.create_dataset(f"Data/Image/{uuid.uuid4().hex}/Data", data=fft)
    assert inspect_tiff(path).shape == (4, 6, 5)
    np.testing.assert_array_equal(read_frames(path)[3].image, series[3])
    # an FFT beside one image: the image
    path = tmp_path / "fft.emd"
    with h5py.File(path, "w") as hdf:
        hdf.create_dataset(f"Data/Image/{uuid.uuid4().hex}/Data", data=fft)
        _add_image(hdf, survey, [_metadata()])
    assert inspect_tiff(path).shape == (8, 8)
    # two detectors of one scan series: no rule tells which
    path = tmp_path / "detectors.emd"
    with h5py.File(path, "w") as hdf:
        haadf = _add_image(hdf, series, [_metadata(detector="HAADF") for _ in range(4)])
        bf = _add_image(hdf, series, [_metadata(detector="BF") for _ in range(4)])
    with pytest.raises(UnsupportedLayoutError, match="detectors.emd: 2 images") as caught:
        inspect_tiff(path)
    for name, detector in ((haadf, "HAADF"), (bf, "BF")):
        assert f"{name} ({detector}, 4 frames of 6 x 5 px)" in str(caught.value)
    assert "export the frames wanted as TIFF from Velox" in str(caught.value)


def _text_dataset(hdf: h5py.File, name: str, value: dict) -> None:
    hdf.create_dataset(name, data=[json.dumps(value)], dtype=h5py.string_dtype())


@pytest.mark.parametrize("velox_version", [9, 11])
def test_groups_of_a_file_refused_are_named_as_velox_shows_them(tmp_path, velox_version):
    # a DPC acquisition: every group's detector is "DF4", and the file was refused naming
    # eight groups "DF4" while Velox shows them as DPC, iDPC, DF4-A ... (its displays)
    path = tmp_path / "dpc.emd"
    image = _stack(n=1, h=4, w=4)
    with h5py.File(path, "w") as hdf:
        names = [_add_image(hdf, image, [_metadata(detector="DF4")]) for _ in range(3)]
        for i, (name, shown) in enumerate(zip(names[:2], ["iDPC", "DF4-A"], strict=True)):
            if velox_version == 11:  # the display points to a data reference, to the group
                ref = f"SharedProperties/ImageSeriesDataReference/{i}"
                _text_dataset(hdf, ref, {"dataPath": f"/{name}"})
                _text_dataset(hdf, f"Displays/ImageDisplay/{i}",
                              {"data": f"/{ref}", "id": f"id{i}", "title": shown})
            else:
                _text_dataset(hdf, f"Presentation/Displays/ImageDisplay/{i}",
                              {"dataPath": f"/{name}", "display": {"label": shown}})
        _text_dataset(hdf, "Displays/ImageDisplay/damaged", {"data": "/nowhere"})
        hdf.create_dataset("Presentation/Displays/ImageDisplay/not_text", data=[1, 2])
    with pytest.raises(UnsupportedLayoutError, match="dpc.emd: 3 images") as caught:
        inspect_tiff(path)
    reason = str(caught.value)
    assert f"{names[0]} (DF4, shown as 'iDPC', 1 frame of 4 x 4 px)" in reason
    assert f"{names[1]} (DF4, shown as 'DF4-A', 1 frame of 4 x 4 px)" in reason
    assert f"{names[2]} (DF4, 1 frame of 4 x 4 px)" in reason  # no display: the detector


def test_detectors_whose_metadata_the_writer_has_not_extended_are_waited_for(tmp_path):
    """Two detectors' first frames written before their Metadata columns: the look that lists
    the groups (no rule tells which to read) met an empty Metadata and raised IndexError, no
    InputError, out of the service's structural check."""
    path = tmp_path / "live.emd"
    with h5py.File(path, "w") as hdf:
        for name in ("haadf", "bf"):
            group = hdf.create_group(f"Data/Image/{name}")
            group.create_dataset("Data", data=np.zeros((4, 4, 1), np.uint16),
                                 maxshape=(4, 4, None))
            group.create_dataset("Metadata", shape=(4096, 0), dtype=np.uint8,
                                 maxshape=(4096, None))
    for reader in (inspect_tiff, read_frames):
        with pytest.raises(TruncatedTiffError, match=r"live.emd: Data/Image/\w+/Metadata "
                                                     r"holds no text for frame 0: still being"):
            reader(path)
    with h5py.File(path, "r+") as hdf:  # the writer catches up
        for name, detector in (("haadf", "HAADF"), ("bf", "BF")):
            text = np.frombuffer(json.dumps(_metadata(detector=detector)).encode(), np.uint8)
            metadata = hdf[f"Data/Image/{name}/Metadata"]
            metadata.resize((4096, 1))
            metadata[:len(text), 0] = text
    with pytest.raises(UnsupportedLayoutError, match=r"live.emd: 2 images .*\(HAADF, 1 frame"):
        inspect_tiff(path)


def test_metadata_declaring_absurd_text_lengths_is_refused_before_it_is_read(tmp_path):
    """A damaged Metadata dataspace of 2**33 bytes a frame in a 20 kB file (its chunks never
    written): the frames' read allocated 2**33 bytes per frame for texts of zeros, and the
    look that names each group's detector 2**33 bytes."""
    import subprocess
    import sys

    def write(path: Path, groups: int) -> Path:
        with h5py.File(path, "w") as hdf:
            for k in range(groups):
                group = hdf.create_group(f"Data/Image/g{k}")
                group.create_dataset("Data", data=np.zeros((8, 8, 3), np.uint16))
                metadata = group.create_dataset("Metadata", shape=(2**33, 3), dtype=np.uint8,
                                                chunks=(4096, 1))
                text = np.frombuffer(json.dumps(_metadata()).encode(), np.uint8)
                for i in range(3):
                    metadata[:len(text), i] = text
        return path

    one, two = write(tmp_path / "one.emd", 1), write(tmp_path / "two.emd", 2)
    assert one.stat().st_size < 2**20
    script = (
        "import resource, sys\n"
        "from nwwatch.io import InputError, inspect_tiff, read_frames\n"
        "import h5py\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.RLIM_INFINITY))\n"
        "for p in sys.argv[1:]:\n"
        "    for read in (inspect_tiff, read_frames):\n"
        "        try:\n"
        "            read(p)\n"
        "        except InputError as exc:\n"
        "            print(type(exc).__name__, exc)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(one), str(two)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    for line in lines[:2]:
        assert line.startswith(f"ImageTooLargeError {one}: Data/Image/g0/Metadata declares "
                               "texts of 8589934592 bytes a frame"), line
    for line in lines[2:]:  # which group is read: the detectors are not named
        assert line.startswith(f"UnsupportedLayoutError {two}: 2 images"), line
        assert "(detector not named, 3 frames of 8 x 8 px)" in line, line


def test_spectrum_files_and_other_hdf5_files_are_refused_as_such(tmp_path):
    spectra = tmp_path / "eds.emd"
    with h5py.File(spectra, "w") as hdf:
        hdf.create_dataset("Data/Spectrum/abc/Data", data=np.zeros((4096, 1), np.uint32))
        hdf.create_dataset("Data/SpectrumImage/def/Data", data=np.zeros((100, 1), np.uint8))
    with pytest.raises(UnsupportedLayoutError,
                       match=r"eds.emd: a Velox EMD file without images \(Data holds Spectrum, "
                             r"SpectrumImage\)"):
        read_frames(spectra)
    berkeley = tmp_path / "sim.emd"
    with h5py.File(berkeley, "w") as hdf:
        hdf.attrs["version_major"] = 0
        hdf.create_group("data/image").attrs["emd_group_type"] = 1
    with pytest.raises(UnsupportedLayoutError, match="sim.emd: a Berkeley EMD file"):
        inspect_tiff(berkeley)


def test_a_file_being_written_is_truncated_at_every_cut(tmp_path):
    """The service keeps a file that fails its structural check as a candidate until its
    size settles: every cut must be an InputError naming the file, never partial frames."""
    full = _write(tmp_path / "full.emd", _stack(n=4, h=32, w=32), chunked=False).read_bytes()
    path = tmp_path / "part.emd"
    for cut in (1, 7, 8, 100, 1000, len(full) // 2, len(full) - 1):
        path.write_bytes(full[:cut])
        with pytest.raises(TruncatedTiffError, match="part.emd: .*(cut short|still being)"):
            inspect_tiff(path)
        with pytest.raises(TruncatedTiffError):
            read_frames(path)
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="part.emd"):
        read_frames(path)
    path.write_bytes(full)
    assert len(read_frames(path)) == 4


def test_a_file_a_writer_holds_open_is_waited_for_or_read_whole(tmp_path):
    """Velox may hold the file open while it adds frames: a look meanwhile either refuses it
    as not yet complete or reads consistent frames, and never blocks the writer."""
    path = tmp_path / "live.emd"
    frames = _stack(n=2, h=16, w=16)
    with h5py.File(path, "w", libver="latest") as hdf:
        _add_image(hdf, frames, [_metadata() for _ in range(2)])
        hdf.flush()
        try:
            read = read_frames(path)
        except TruncatedTiffError as exc:
            assert "live.emd" in str(exc)
        else:
            np.testing.assert_array_equal(np.stack([f.image for f in read]), frames)
        hdf.create_group("Data/Text")  # the writer goes on
    assert len(read_frames(path)) == 2


@pytest.mark.parametrize("storage", ["chunked", "contiguous"])
def test_frames_declared_but_not_written_are_not_read_as_zeros(tmp_path, storage):
    # HDF5 reads pixels never written as its fill value: a dataspace grown ahead of the
    # frames (or damaged) gave frames of zeros, measured as frames of nothing
    n = 3
    metas = [_metadata(stamp_us=10**15 + i) for i in range(n + 2)]
    path = tmp_path / "ahead.emd"
    with h5py.File(path, "w") as hdf:
        hdf.create_dataset("Version", data=[_VERSION.encode()], dtype=h5py.string_dtype())
        name = _add_image(hdf, _stack(n=n + 2), metas, chunked=storage == "chunked")
        del hdf[f"{name}/Data"]
        if storage == "chunked":  # two frames more declared than written
            data = hdf.create_dataset(f"{name}/Data", shape=(6, 5, n + 2), dtype="u2",
                                      chunks=(6, 5, 1), maxshape=(6, 5, None))
            data[:, :, :n] = np.moveaxis(_stack(n=n), 0, 2)
            held = "3 of its 5 HDF5 chunks"
        else:  # storage allocated when written (HDF5's late allocation), never written
            hdf.create_dataset(f"{name}/Data", shape=(6, 5, n + 2), dtype="u2")
            held = "0 of its 300 bytes"
    for reader in (inspect_tiff, read_frames):
        with pytest.raises(TruncatedTiffError, match=(
                rf"ahead.emd: Data/Image/\w+/Data declares 5 frames of 6 x 5 px but holds "
                rf"{held}: still being written, or damaged")):
            reader(path)


def test_damaged_files_are_bad_input_naming_the_file(tmp_path):
    garbage = tmp_path / "notes.emd"
    garbage.write_bytes(b"these are not frames " * 100)
    with pytest.raises(TruncatedTiffError, match="notes.emd: not an HDF5 file"):
        inspect_tiff(garbage)
    # a damaged chunk: the structure checks out, the pixels do not decode
    path = _write(tmp_path / "chunk.emd", _stack(n=3, h=64, w=64), compression="gzip")
    with h5py.File(path, "r") as hdf:
        (name,) = list(hdf["Data/Image"])
        offset = hdf[f"Data/Image/{name}/Data"].id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 64)
    assert inspect_tiff(path).n_pages == 3  # the header only: no pixel is read
    with pytest.raises(TruncatedTiffError, match=r"chunk.emd: Data/Image/\w+/Data could not "
                                                 "be read"):
        read_frames(path)
    # metadata that is no JSON, or of another frame count than the data
    bad_json = tmp_path / "json.emd"
    with h5py.File(bad_json, "w") as hdf:
        group = hdf.create_group("Data/Image/abc")
        group.create_dataset("Data", data=np.zeros((4, 4, 1), np.uint16))
        group.create_dataset("Metadata", data=np.frombuffer(b"{not json" + b"\0" * 10,
                                                            np.uint8).reshape(-1, 1))
    with pytest.raises(TruncatedTiffError, match=r"json.emd: Data/Image/abc/Metadata of "
                                                 r"frame 0 is not JSON"):
        read_frames(bad_json)
    short = tmp_path / "short.emd"
    with h5py.File(short, "w") as hdf:
        group = hdf.create_group("Data/Image/abc")
        group.create_dataset("Data", data=np.zeros((4, 4, 3), np.uint16))
        group.create_dataset("Metadata", data=np.zeros((10, 2), np.uint8))
    with pytest.raises(TruncatedTiffError, match="short.emd: .*describes 2 frames and Data "
                                                 "holds 3"):
        inspect_tiff(short)
    fifo = tmp_path / "pipe.emd"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="pipe.emd"):
        inspect_tiff(fifo)


def test_any_damaged_byte_is_bad_input_naming_the_file_or_reads(tmp_path):
    """Bytes overwritten anywhere (superblock, groups, heaps, B-trees, chunks): h5py raised
    RuntimeError and TypeError from the structure's walk, which a service would not have
    taken for bad input."""
    full = _write(tmp_path / "ok.emd", _stack(n=3, h=16, w=16), compression="gzip") \
        .read_bytes()
    path = tmp_path / "damaged.emd"
    rng = np.random.default_rng(0)
    refused = 0
    for at in range(0, len(full), 17):
        damaged = bytearray(full)
        damaged[at:at + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(damaged))
        for reader in (inspect_tiff, read_frames):
            try:
                reader(path)
            except InputError as exc:
                assert str(exc).startswith(f"{path}: "), exc
                refused += 1
    assert refused > 100


def test_an_emd_file_is_not_read_as_a_tomogram(tmp_path):
    path = _write(tmp_path / "series.emd", _stack(n=8, h=8, w=8))
    with pytest.raises(UnsupportedLayoutError,
                       match=r"series.emd: a Velox EMD file holds an image series \(8 frames "
                             r"in time\), not a reconstructed tomogram"):
        read_volume(path)


def test_watch_and_replay_hints_for_emd_files(tmp_path):
    from nwwatch.io import conversion_hint
    from nwwatch.service.replay import list_inputs, replay
    from nwwatch.service.watcher import unread_hint

    assert conversion_hint("run.emd") == ""
    assert unread_hint("run.EMD", "insitu").startswith(
        'a Velox EMD file whose name this watch does not take: add its pattern (e.g. "*.emd")')
    assert unread_hint("run.emd", "tomogram") == (
        'a frame or a stack of frames? nwwatch reads it as in-situ frames: watch or replay it '
        'as kind "insitu"')
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("a.emd", "b.Emd", "c.rec"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in list_inputs(folder, "insitu")] == ["a.emd", "b.Emd"]
    unread: list[Path] = []
    assert [p.name for p in list_inputs(folder, "tomogram", unread=unread)] == ["c.rec"]
    assert sorted(p.name for p in unread) == ["a.emd", "b.Emd"]
    (folder / "c.rec").unlink()
    (tmp_path / "tomo").mkdir()
    s = replay(folder, tmp_path / "out", kind="tomogram",
               model=model(tmp_path / "tomo", kind="tomogram"))
    assert (s.files, s.exit_status) == (0, 0)
    last = s.lines()[-1]
    assert "2 files whose names a tomogram replay does not look for (a.emd, b.Emd): in-situ " \
           "frames (.emd): replay without --kind tomogram" in last, last
    assert "format replay does not read" not in last


def test_an_emd_series_replays_to_the_rows_of_its_tiff_twin(tmp_path):
    from nwwatch.io import write_stack_tiff
    from nwwatch.service.replay import replay

    onnx = model(tmp_path)
    frames = np.stack([paint_insitu(angle, size=128, half_width=16)
                       for angle in (100.0, 125.0, 150.0)])
    times = [T0 + timedelta(milliseconds=400 * i) for i in range(3)]
    rows = {}
    for name in ("run.tif", "run.emd"):
        acq = tmp_path / f"acq-{name}"
        acq.mkdir()
        if name.endswith(".tif"):
            write_stack_tiff(acq / name, frames, pixel_size_nm=0.5, acquired_at=times)
        else:
            stamps = [int(t.timestamp() * 1e6) for t in times]
            _write(acq / name, frames, [_metadata(pixel_m=5e-10, stamp_us=s) for s in stamps])
        s = replay(acq, tmp_path / f"out-{name}", kind="insitu", model=onnx)
        assert (s.done, s.quarantined, s.exit_status) == (1, 0, 0), s.lines()
        table = ds.dataset(tmp_path / f"out-{name}" / "frames", format="parquet").to_table()
        rows[name] = sorted(table.to_pylist(), key=lambda row: row["frame"])
    differ = {"source", "source_sha256", "overlay_path", "label_path", "batch_id",
              "processed_at", "file_mtime", "file_size_bytes", "acquisition", "detected_at"}
    assert len(rows["run.emd"]) == 3
    for tif, emd in zip(rows["run.tif"], rows["run.emd"], strict=True):
        assert emd["source"] == str(tmp_path / "acq-run.emd" / "run.emd")
        same = {k: v for k, v in tif.items()
                if k not in differ and not k.endswith(("_s", "_ms"))}
        assert same == {k: emd[k] for k in same}
    assert [(r["status"], r["reason_code"]) for r in rows["run.emd"]] == [("ok", "ok")] * 3
    assert rows["run.emd"][1]["acquired_at"] == times[1]
