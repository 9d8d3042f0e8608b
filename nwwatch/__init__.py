"""nwwatch: live segmentation and measurement of in-situ TEM frames and electron tomograms.

The runtime package never imports torch; training lives in the separate ``training`` package.
Data path: file (``io``) -> frame -> segmentation (``segment``) -> measurement (``measure``,
``volume``) -> row (``results.schema``) -> Parquet (``results.parquet``); ``service`` drives it.
"""

import os
from pathlib import Path

# ONNX Runtime 1.29+ sends telemetry from Linux too: it writes a device identifier under
# ~/.cache, uploads a process event, and, where the home cannot be written (a service user
# under the unit's ProtectHome=), prints a colour-coded line into the JSON log at import.
# An acquisition PC is no place for either; ORT_DISABLE_TELEMETRY set by the user wins.
# Set before ONNX Runtime is imported (it reads it then); every nwwatch module imports this.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# The one place the version is written (pyproject.toml reads it): raise it for every release,
# or pip install -U of the new wheel keeps the installed one.
__version__ = "0.2.0"

#: The in-situ model shipped with the package: what the service, replay, `nwwatch measure`,
#: `nwwatch label` and the demo use when given none.
DEFAULT_INSITU_MODEL = Path(__file__).resolve().parent / "models" / "insitu-default.onnx"

__all__ = ["DEFAULT_INSITU_MODEL", "__version__"]
