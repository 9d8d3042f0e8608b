"""The files acquisition PCs write, through the service's reader: what is read, what is refused.

Writes one small file of each kind into a temporary folder (tifffile, numpy), reads each with
``nwwatch.io.read_frames`` (the reader of the service, replay and ``nwwatch measure``) and
prints one line per file: frames, pixel type, pixel size and time source, or the error and
its reason. docs/io.md quotes the table.

Run: PYTHONPATH=. .venv/bin/python bench/io_acquisition_files.py [--json OUT.json]  (~2 s)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import structlog
import tifffile

from nwwatch.io import InputError, read_frames

RNG = np.random.default_rng(0)
OME = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/'
       'OME/2016-06"><Image ID="Image:0"><AcquisitionDate>2024-05-06T07:08:09</AcquisitionDate>'
       '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="64" SizeY="64" '
       'SizeZ="1" SizeC="1" SizeT="1" PhysicalSizeX="2.5" PhysicalSizeY="2.5" '
       'PhysicalSizeXUnit="&#197;" PhysicalSizeYUnit="&#197;"><Channel ID="Channel:0:0" '
       'SamplesPerPixel="1"/><TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>')


def _frame(dtype="uint16", shape=(64, 64)) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return RNG.normal(1000.0, 200.0, shape).astype(dtype)
    high = 250 if np.dtype(dtype).itemsize == 1 else 4000
    low = -high if kind == "i" else 0
    return RNG.integers(low, high, shape).astype(dtype)


def _nan_frame() -> np.ndarray:
    image = _frame("float32")
    image[0, :4], image[1, :4] = np.nan, np.inf
    return image


def _write(path: Path, data: np.ndarray, **options) -> None:
    tifffile.imwrite(path, data, **options)


def _grown(path: Path) -> None:  # one write call (and DateTime) per page, as software grows it
    with tifffile.TiffWriter(path) as tif:
        for i in range(3):
            tif.write(_frame(), datetime=f"2025:03:04 05:06:0{i}", metadata=None,
                      resolution=(2e6, 2e6), resolutionunit="CENTIMETER")


def _preview_first(path: Path) -> None:
    with tifffile.TiffWriter(path) as tif:
        tif.write(_frame("uint8", (16, 16)), subfiletype=1, metadata=None)
        tif.write(_frame(), metadata=None)


def _cut(path: Path) -> None:
    _write(path, _frame(shape=(256, 256)))
    path.write_bytes(path.read_bytes()[:70_000])


def _bad_imagej(path: Path) -> None:
    _write(path, np.stack([_frame()] * 2), photometric="minisblack", metadata=None,
           description="ImageJ=1.54f\nimages=abc\n")


CASES: dict[str, Callable[[Path], None]] = {
    "uint8.tif": lambda p: _write(p, _frame("uint8")),
    "uint16.tif": lambda p: _write(p, _frame()),
    "int16.tif": lambda p: _write(p, _frame("int16")),
    "int8.tif": lambda p: _write(p, _frame("int8")),
    "uint32.tif": lambda p: _write(p, _frame("uint32")),
    "float32 NaN inf.tif": lambda p: _write(p, _nan_frame()),
    "float64.tif": lambda p: _write(p, _frame("float64")),
    "12-bit packed.tif": lambda p: _write(p, _frame(), bitspersample=12),
    "rgb.tif": lambda p: _write(p, np.dstack([_frame("uint8")] * 3), photometric="rgb"),
    "rgba.tif": lambda p: _write(p, np.dstack([_frame("uint8")] * 4), photometric="rgb",
                                 extrasamples=["unassalpha"]),
    "min-is-white.tif": lambda p: _write(p, _frame(), photometric="miniswhite"),
    "stack.tif": lambda p: _write(p, np.stack([_frame()] * 3), photometric="minisblack"),
    "grown one page per call.tif": _grown,
    "bigtiff.tif": lambda p: _write(p, _frame(), bigtiff=True),
    "ome nm.ome.tif": lambda p: _write(p, _frame(), ome=True, metadata={
        "axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "nm"}),
    "ome um.ome.tif": lambda p: _write(p, _frame(), ome=True, metadata={
        "axes": "YX", "PhysicalSizeX": 0.00025, "PhysicalSizeY": 0.00025}),
    "ome angstrom date.ome.tif": lambda p: _write(p, _frame(), description=OME, metadata=None),
    "imagej micron finterval.tif": lambda p: _write(
        p, np.stack([_frame()] * 3), imagej=True, resolution=(4000.0, 4000.0),
        datetime="2025:01:02 03:04:05", metadata={"axes": "TYX", "unit": "micron",
                                                  "finterval": 0.5}),
    "imagej nm spacing.tif": lambda p: _write(
        p, np.stack([_frame()] * 2), imagej=True, resolution=(4.0, 4.0),
        metadata={"axes": "ZYX", "unit": "nm", "spacing": 3.0}),
    "resolution cm.tif": lambda p: _write(p, _frame(), resolution=(4e7, 4e7),
                                          resolutionunit="CENTIMETER"),
    "resolution inch.tif": lambda p: _write(p, _frame(), resolution=(25.4e6 / 0.25,) * 2,
                                            resolutionunit="INCH"),
    "resolution none.tif": lambda p: _write(p, _frame(), resolution=(4.0, 4.0),
                                            resolutionunit="NONE"),
    "72 dpi.tif": lambda p: _write(p, _frame(), resolution=(72.0, 72.0)),
    "no pixel size.tif": lambda p: _write(p, _frame()),
    "datetime tag.tif": lambda p: _write(p, _frame(), datetime="2025:03:04 05:06:07"),
    "lzw.tif": lambda p: _write(p, _frame(), compression="lzw"),
    "deflate predictor.tif": lambda p: _write(p, _frame(), compression="zlib", predictor=True),
    "zstd.tif": lambda p: _write(p, _frame(), compression="zstd"),
    "jpeg.tif": lambda p: _write(p, _frame("uint8"), compression="jpeg"),
    "float32 fp predictor.tif": lambda p: _write(p, _frame("float32"), compression="zlib",
                                                 predictor=3),
    "tiled.tif": lambda p: _write(p, _frame(shape=(128, 128)), tile=(32, 32)),
    "1x1.tif": lambda p: _write(p, _frame(shape=(1, 1))),
    "3x512.tif": lambda p: _write(p, _frame(shape=(3, 512))),
    "8x8192.tif": lambda p: _write(p, _frame(shape=(8, 8192))),
    "constant.tif": lambda p: _write(p, np.full((64, 64), 500, np.uint16)),
    "preview first.tif": _preview_first,
    "cut short.tif": _cut,
    "zero bytes.tif": lambda p: p.write_bytes(b""),
    "png named tif.tif": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)),
    "bad imagej header.tif": _bad_imagej,
    "ünï cødé name.tif": lambda p: _write(p, _frame()),
}


def outcome(path: Path) -> dict:
    """What the service's reader makes of ``path``."""
    try:
        frames = read_frames(path)
    except InputError as exc:
        return {"file": path.name, "read": False, "error": type(exc).__name__,
                "reason": exc.reason}
    first = frames[0]
    return {"file": path.name, "read": True, "frames": len(frames),
            "shape": list(first.image.shape), "dtype": str(first.image.dtype),
            "pixel_size_nm": first.pixel_size_nm,
            "acquired_at": first.acquired_at.isoformat(),
            "acquired_at_source": first.acquired_at_source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write the outcomes here")
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # warnings: not here
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for name, make in CASES.items():
            path = Path(folder) / name
            make(path)
            rows.append(outcome(path))
    for r in rows:
        if r["read"]:
            size = "-" if r["pixel_size_nm"] is None else f"{r['pixel_size_nm']:g} nm"
            print(f"{r['file']:30s} read: {r['frames']} x {r['shape']} {r['dtype']}, "
                  f"pixel {size}, time from {r['acquired_at_source']}")
        else:
            print(f"{r['file']:30s} refused: {r['error']}: {r['reason']}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
