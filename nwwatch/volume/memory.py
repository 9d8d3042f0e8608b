"""The memory one tomogram needs to be segmented and measured, estimated from its shape and
pixel type (the TIFF header) before its voxels are read, and the check that it can fit.

The service and ``nwwatch replay`` hold a tomogram whole (docs/tomography.md, "Memory"). One
too large for the memory the process may use was killed by the kernel's OOM killer, the
service restarted, tried it again, was killed again, and after ``max_attempts`` kills
quarantined it with the generic reason of a file that kills the process. Checked first, it
is refused at once, saying what it needs, what there is and what to do.

The estimate is the larger of two figures. A share for each voxel: the peak resident memory
of ``nwwatch replay`` (``/usr/bin/time -v``, ``OMP_NUM_THREADS=1``) on a 64 x 768 x 768
float32 volume (37.7 M voxels), as committed in bench/results/tomo_memory.json (``python -m
bench.bench_tomo_memory``; docs/tomography.md, "Memory"): 1317120 KiB (1.26 GiB) with the
``smoothed-threshold`` model and 1615648 KiB (1.54 GiB) with the ``feature-forest``, of which
the process held 0.12 GiB before the volume: 32.3 and 40.4 bytes a voxel. And, for volumes
of few or large slices, a smaller share for each voxel plus a share for each pixel of one
model call: a call holds at least one whole slice (up to ``inference.batch_size`` slices
under :data:`nwwatch.volume.runner.MAX_CALL_PIXELS`), and its work arrays grow with its
area whatever the depth (a volume of two 2048 x 2048 slices needed 3.3 to 7.1 GiB, where the
share per voxel said 0.3): per call pixel, the most, over slices of 768-2048 px (one a call),
that a volume of two slices added above its voxels' share, bench/results/tomo_slice_memory.json
(``python -m bench.bench_tomo_slice_memory``: ``ru_maxrss`` of segment_volume and
volume_metrics): 838.5 bytes with the smoothed threshold (LOW), 1811.5 with a U-Net, the most
hungry model measured (HIGH; the forest 1475); per voxel, the threshold's 64 x 768 x 768
peak less its call's share: 19.2 bytes.

The float32 voxels of those volumes (4 bytes of each) are held through the segmentation, so
another pixel type shifts the voxel shares by its own item size less 4.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from nwwatch.io import InputError, inspect_tiff
from nwwatch.io.limits import check_whole_read_bytes
from nwwatch.resources import V2_KILL_LIMITS, Limit, available_memory

#: Bytes in a GiB, the unit of the figures the check reports.
GIB = 2**30
#: Voxels of the volume measured (64 x 768 x 768 float32).
MEASURED_VOXELS = 64 * 768 * 768
#: Its item size in bytes (float32).
MEASURED_ITEMSIZE = 4
#: Peak resident memory measured with each model (KiB, ``/usr/bin/time -v``'s "Maximum
#: resident set size": bench/results/tomo_memory.json), and the process's memory before the
#: volume.
MEASURED_PEAK_KIB = {"smoothed-threshold": 1317120, "feature-forest": 1615648}
MEASURED_BASE_GIB = 0.12
#: Bytes a float32 voxel adds at the peak: the least and the most over the models measured.
PEAK_BYTES_PER_VOXEL_LOW = (min(MEASURED_PEAK_KIB.values()) * 1024 - MEASURED_BASE_GIB * GIB) \
    / MEASURED_VOXELS
PEAK_BYTES_PER_VOXEL_HIGH = (max(MEASURED_PEAK_KIB.values()) * 1024 - MEASURED_BASE_GIB * GIB) \
    / MEASURED_VOXELS
#: Pixels of one model call on the volume measured (one 768 x 768 slice: two exceed the cap).
MEASURED_CALL_PIXELS = 768 * 768
#: Bytes a pixel of one model call adds at the peak (module docstring): the smoothed
#: threshold's and the most hungry model's (a U-Net), from bench/results/tomo_slice_memory.json.
PEAK_BYTES_PER_CALL_PIXEL_LOW = 838.5
PEAK_BYTES_PER_CALL_PIXEL_HIGH = 1811.5
#: Bytes a float32 voxel adds beside its call's share: the threshold's measured peak less it.
PEAK_BYTES_PER_VOXEL_BESIDE_CALL = (MEASURED_PEAK_KIB["smoothed-threshold"] * 1024
                                    - MEASURED_BASE_GIB * GIB
                                    - PEAK_BYTES_PER_CALL_PIXEL_LOW * MEASURED_CALL_PIXELS
                                    ) / MEASURED_VOXELS
#: Slices a model call takes at most unless told (``inference.batch_size``'s default).
SLICES_PER_CALL = 8


class TomogramTooLargeError(InputError):
    """A tomogram that needs more memory to be segmented and measured than this process may
    use (the reason names both figures, in GiB, and what to do). Refused from its header,
    before any voxel is read."""

    #: refused for what the machine lacks, not for the file's content (``Failure.
    #: machine_limit``): a tomogram done before keeps its rows when a ``--force`` run is
    #: refused
    machine_limit = True


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory (bytes) that segmenting and measuring a tomogram adds to the process:
    ``low`` with the least hungry model measured (the smoothed threshold), ``high`` with the
    most (the feature forest)."""

    voxels: int
    low: int
    high: int


def tomogram_peak_bytes(shape: tuple[int, ...], dtype: np.dtype | str,
                        slices_per_call: int = SLICES_PER_CALL) -> MemoryEstimate:
    """The memory a tomogram of ``shape`` (Z, Y, X) voxels of ``dtype`` needs at the peak of
    its segmentation and measurement, above what the process held before (module docstring):
    the larger of a share per voxel, and a smaller share per voxel plus a share per pixel of
    one model call (``slices_per_call``: the batch size the model is run with)."""
    from nwwatch.volume.runner import MAX_CALL_PIXELS

    voxels = int(np.prod(shape, dtype=np.int64))
    slice_pixels = max(int(np.prod(shape[-2:], dtype=np.int64)), 1)
    # as many slices as fit under the cap (at least one), at most a batch of them
    per_call = max(1, min(slices_per_call, int(shape[0]) if len(shape) == 3 else 1,
                          MAX_CALL_PIXELS // slice_pixels))
    call_pixels = per_call * slice_pixels
    shift = np.dtype(dtype).itemsize - MEASURED_ITEMSIZE
    held = voxels * (PEAK_BYTES_PER_VOXEL_BESIDE_CALL + shift)
    low = max(voxels * (PEAK_BYTES_PER_VOXEL_LOW + shift),
              held + call_pixels * PEAK_BYTES_PER_CALL_PIXEL_LOW)
    high = max(voxels * (PEAK_BYTES_PER_VOXEL_HIGH + shift),
               held + call_pixels * PEAK_BYTES_PER_CALL_PIXEL_HIGH)
    return MemoryEstimate(voxels, int(low), int(high))


def check_tomogram_memory(path: str | os.PathLike[str], shape: tuple[int, ...],
                          dtype: np.dtype | str, available_bytes: float | None,
                          available_source: str = "", *, training: bool = False,
                          slices_per_call: int = SLICES_PER_CALL) -> MemoryEstimate:
    """The estimate for a tomogram of ``shape`` and ``dtype`` (its TIFF header), when it may
    fit in ``available_bytes`` (None: unknown, never refused); else TomogramTooLargeError.

    It is refused only when even the lower estimate does not fit: a volume that fits with
    the threshold but not with the forest is tried (the caller may warn), since which model
    runs, and how far the figures measured on one volume carry to another, is not certain.
    ``available_source``: where the figure was read (a cgroup file, /proc/meminfo), for the
    reason. ``training``: the advice is for ``nwwatch train --volume`` (train again), not the
    service's (its MemoryMax; the file is tried again at the next start).

    Raises
    ------
    TomogramTooLargeError : ``estimate.low`` > ``available_bytes``; the reason names the
        volume's size, the GiB needed and available, and what to do.
    """
    estimate = tomogram_peak_bytes(shape, dtype, slices_per_call)
    if available_bytes is None or estimate.low <= available_bytes:
        return estimate
    where = f" ({available_source})" if available_source else ""
    # A control group's file (the unit's MemoryMax, a container's --memory) can be raised;
    # the machine's memory (/proc/meminfo) cannot.
    limit = "raise that limit" + ("" if training else
                                  " (the service's MemoryMax: systemctl edit nwwatch)")
    more = limit if "/memory." in available_source else "use a machine with more memory"
    # The refusal is about the memory, not the file (nwwatch.service.volumes.
    # retry_tomograms_that_fit).
    then = ("then train again" if training else
            "it is tried again when the service or a replay next starts with that memory")
    raise TomogramTooLargeError(
        path, f"a {' x '.join(map(str, shape))} {np.dtype(dtype)} tomogram "
        f"({estimate.voxels:,} voxels) needs about {estimate.low / GIB:.1f} to "
        f"{estimate.high / GIB:.1f} GiB of memory to be segmented and measured, and "
        f"{available_bytes / GIB:.1f} GiB are available{where}: {more}, or bin the volume "
        f"(2 x 2 x 2: 8 times fewer voxels); {then} (docs/tomography.md, \"Memory\")")


def tomogram_memory(path: str | os.PathLike[str], training: bool = False,
                    slices_per_call: int = SLICES_PER_CALL
                    ) -> tuple[MemoryEstimate, Limit | None]:
    """The memory the tomogram at ``path`` needs (from its TIFF header) and what this process
    may still allocate before it is killed (the cgroup's ``memory.max`` less its use, or
    ``MemAvailable``: :func:`nwwatch.resources.available_memory`; None: unknown). The service,
    replay and ``nwwatch train --volume`` check a volume with it (``training``: the reason's
    advice is for training).

    Raises
    ------
    TomogramTooLargeError : it cannot fit, even with the least hungry model
        (:func:`check_tomogram_memory`).
    InputError : the file is not a readable TIFF (:func:`nwwatch.io.inspect_tiff`), or
        declares more pixels than a file read whole may (ImageTooLargeError,
        :data:`nwwatch.io.MAX_FILE_BYTES`: no memory would let it be read).
    """
    info = inspect_tiff(path)
    # a tomogram is read whole: one over the reader's limit is refused as such, not told to
    # wait for more memory
    check_whole_read_bytes(path, info.declared_bytes, info.shape)
    available = available_memory(V2_KILL_LIMITS)
    estimate = check_tomogram_memory(
        path, (info.n_pages, *info.page_shape), info.dtype,
        None if available is None else available.value,
        "" if available is None else available.source, training=training,
        slices_per_call=slices_per_call)
    return estimate, available
