"""Sub-pixel boundary points of a mask or of a probability map's 0.5 iso-line.

Points are the vertices marching squares would produce, without the connectivity (the circle
and line fits need none): for every pair of 4-neighbour pixels on opposite sides of the
boundary, one point on the segment joining their centres. For a binary mask that is the
midpoint of the pixel edge ("crack") between them - unbiased for the integer-pixel-centre
convention, because a pixel whose area is mostly inside a straight boundary has its centre
inside it. For a probability map the point is the linear interpolation of the 0.5 crossing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoundaryPoints:
    """Boundary points in image coordinates.

    ``points`` float64 (N, 2) (row, col); ``outward`` float64 (N, 2) unit step from the
    inside pixel to the outside pixel (one of (+-1, 0), (0, +-1)); ``outside`` int64 (N, 2)
    (row, col) of the outside pixel, ``inside`` likewise.
    """

    points: np.ndarray
    outward: np.ndarray
    inside: np.ndarray
    outside: np.ndarray

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def subset(self, keep: np.ndarray) -> BoundaryPoints:
        return BoundaryPoints(
            self.points[keep], self.outward[keep], self.inside[keep], self.outside[keep]
        )


def _pairs(inside: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Index arrays of horizontal and vertical neighbour pairs that straddle the boundary."""
    h = np.nonzero(inside[:, :-1] != inside[:, 1:])
    v = np.nonzero(inside[:-1, :] != inside[1:, :])
    return [h[0], h[1]], [v[0], v[1]]


def _assemble(
    inside: np.ndarray, frac_h: np.ndarray, frac_v: np.ndarray, h, v, offset: tuple[int, int]
) -> BoundaryPoints:
    hr, hc = h
    vr, vc = v
    h_in_first = inside[hr, hc]
    v_in_first = inside[vr, vc]
    # frac is the position of the crossing from the first pixel towards the second.
    pts = np.concatenate(
        [np.stack([hr, hc + frac_h], axis=1), np.stack([vr + frac_v, vc], axis=1)]
    ).astype(np.float64)
    sign_h = np.where(h_in_first, 1, -1)
    sign_v = np.where(v_in_first, 1, -1)
    outward = np.concatenate(
        [
            np.stack([np.zeros_like(sign_h), sign_h], axis=1),
            np.stack([sign_v, np.zeros_like(sign_v)], axis=1),
        ]
    ).astype(np.float64)
    first = np.concatenate([np.stack([hr, hc], axis=1), np.stack([vr, vc], axis=1)])
    second = first + np.abs(outward).astype(np.int64)
    in_first = np.concatenate([h_in_first, v_in_first])[:, None]
    inside_px = np.where(in_first, first, second)
    outside_px = np.where(in_first, second, first)
    off = np.asarray(offset, dtype=np.int64)
    return BoundaryPoints(pts + off, outward, inside_px + off, outside_px + off)


def mask_boundary_points(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> BoundaryPoints:
    """Midpoints of the pixel edges between ``mask`` (bool (H, W)) and its complement.

    Only pairs inside the array are used: the image border contributes no points.
    ``offset`` (row, col) is added to every coordinate (for crops).
    """
    inside = np.asarray(mask, dtype=bool)
    h, v = _pairs(inside)
    return _assemble(
        inside, np.full(h[0].shape, 0.5), np.full(v[0].shape, 0.5), h, v, offset
    )


def iso_boundary_points(
    probability: np.ndarray, level: float = 0.5, offset: tuple[int, int] = (0, 0)
) -> BoundaryPoints:
    """Linearly interpolated crossings of ``probability`` (float (H, W)) through ``level``.

    The inside is ``probability >= level``.
    """
    p = np.asarray(probability, dtype=np.float64)
    inside = p >= level
    h, v = _pairs(inside)
    p0h, p1h = p[h[0], h[1]], p[h[0], h[1] + 1]
    p0v, p1v = p[v[0], v[1]], p[v[0] + 1, v[1]]
    frac_h = np.clip((level - p0h) / (p1h - p0h), 0.0, 1.0)
    frac_v = np.clip((level - p0v) / (p1v - p0v), 0.0, 1.0)
    return _assemble(inside, frac_h, frac_v, h, v, offset)
