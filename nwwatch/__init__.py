"""nwwatch: live segmentation and measurement of in-situ TEM frames and electron tomograms.

The runtime package never imports torch; training lives in the separate ``training`` package.
Data path: file (``io``) -> frame -> segmentation (``segment``) -> measurement (``measure``,
``volume``) -> row (``results.schema``) -> Parquet (``results.parquet``); ``service`` drives it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
