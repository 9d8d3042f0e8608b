"""A grey PNG of 1, 2 or 4 bits a pixel, written by hand (Pillow writes grey at 1 or 8 bits
only), as PNG optimisers store a mask of few small values."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def grey_png(path: Path, values: np.ndarray, bits: int) -> None:
    """A grey PNG of ``bits`` bits a pixel (as optipng or oxipng store a mask of small
    values), written by hand: Pillow writes grey at 1 or 8 bits only."""
    per_byte = 8 // bits
    rows = []
    for row in values:
        padded = list(row) + [0] * (-len(row) % per_byte)
        packed = bytearray([0])  # filter: none
        for i in range(0, len(padded), per_byte):
            byte = 0
            for v in padded[i:i + per_byte]:
                byte = (byte << bits) | int(v)
            packed.append(byte)
        rows.append(bytes(packed))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    h, w = values.shape
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits,
                                                                       0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
