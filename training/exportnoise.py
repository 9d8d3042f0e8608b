"""What ``nwwatch train`` and ``python -m training.interpolate --onnx`` drop of torch's ONNX
exporter output: warnings and log lines that say nothing about the model exported (its graph's
contract is checked after export, :mod:`training.export`). Imports no torch: the filter is set
before the exporter is loaded."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Warnings of torch's ONNX exporters that say nothing about the model nwwatch exports
#: (whose contract is checked after export): (category, message regex at the start).
KNOWN_HARMLESS_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # torch's pytree deprecation, raised from inside the dynamo exporter's own code.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # The legacy exporter's note that a Slice with steps != 1 is left unfolded.
    (UserWarning, r"Constant folding - Only steps=1 can be constant folded"),
)
#: torch's exporter logs one line per torchvision operator it cannot register: nwwatch
#: exports no torchvision operator.
_TORCH_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def _not_torchvision_note(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("torchvision is not installed")


@contextlib.contextmanager
def known_noise_filtered() -> Iterator[None]:
    """Drop :data:`KNOWN_HARMLESS_WARNINGS` and the exporter's torchvision log lines; every
    other warning and log line is shown as before."""
    registration = logging.getLogger(_TORCH_REGISTRATION_LOGGER)
    with warnings.catch_warnings():
        for category, message in KNOWN_HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        registration.addFilter(_not_torchvision_note)
        try:
            yield
        finally:
            registration.removeFilter(_not_torchvision_note)
