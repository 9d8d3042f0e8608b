"""What a file's pages declare themselves to be, from its structural check
(:class:`~nwwatch.io.records.TiffInfo`): Z slices, as a tomogram's, or time frames, as an
in-situ series'. The service, replay, the labelling tool and training warn when a file
declares the other kind's layout; none refuses it (a stack saved with Fiji's defaults
declares Z)."""

from __future__ import annotations

from pathlib import Path

#: What declares a file's pages Z slices, as notes name it (an MRC file that is not a stack
#: of images, space group 0, is a volume).
Z_DECLARATIONS = "ImageJ slices, OME SizeZ or an MRC volume"


def declares_z_slices(info) -> bool:
    """True when a :class:`~nwwatch.io.records.TiffInfo` has several pages along a declared
    Z axis (ImageJ ``slices``, OME ``SizeZ``): the layout of a tomogram. In-situ stacks
    declare time (ImageJ ``frames``, OME ``SizeT``) or nothing; a stack saved with Fiji's
    defaults may declare Z, hence a note, not a refusal."""
    return info.n_pages > 1 and info.axes[:1] == "Z"


#: What declares a file's pages time frames, as notes name it.
T_DECLARATIONS = "ImageJ frames, OME SizeT or an MRC stack of images, .mrcs"


def declares_time_frames(info) -> bool:
    """True when a :class:`~nwwatch.io.records.TiffInfo` has several pages along a declared
    time axis (ImageJ ``frames``, OME ``SizeT``), or is an MRC stack of images (space group
    0) named ``.mrcs``, as SerialEM names its movies: the layout of an in-situ series, which
    a tomogram replay would segment as one volume. Not when it declares Z too: a time series
    of volumes is refused, not segmented, and its quarantine reason says so. (An MRC stack
    of images named otherwise is not: a reconstruction may be written with space group 0.)"""
    if info.n_pages > 1 and info.layout == "mrc":
        return info.axes == "IYX" and Path(info.path).suffix.lower() == ".mrcs"
    return info.n_pages > 1 and info.axes[:1] == "T" and "Z" not in info.axes
