"""nwwatch: live segmentation and measurement of in-situ TEM frames and electron tomograms.

The runtime package never imports torch; training lives in the separate ``training`` package.
Data path: file (``io``) -> frame -> segmentation (``segment``) -> measurement (``measure``,
``volume``) -> row (``results.schema``) -> Parquet (``results.parquet``); ``service`` drives it.
"""

from pathlib import Path

__version__ = "0.1.0"

#: The in-situ model shipped with the package: what the service, replay, `nwwatch measure`,
#: `nwwatch label` and the demo use when given none.
DEFAULT_INSITU_MODEL = Path(__file__).resolve().parent / "models" / "insitu-default.onnx"

__all__ = ["DEFAULT_INSITU_MODEL", "__version__"]
