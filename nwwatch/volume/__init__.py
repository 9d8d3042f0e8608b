"""Tomograms: segment a volume with a 2D model and measure the 3D result.

Public API::

    segment_volume(segmenter, volume, *, triplanar=False, flips=False, margin_px=16, ...)
        -> VolumeSegmentation   # mask, warning signs, verdict (status + reason codes)
    slab_stack(volume, centres, slices) -> (N, S, Y, X)   # what a slab model sees
    VolumeOptions(triplanar, flips, margin_px, min_component_voxels)   # the service's settings
    volume_metrics(mask, voxel_size_nm=None, *, valid=None) -> VolumeMetrics   # valid: data
    VolumeMetrics.as_row()    # keys == names of VOLUME_METRIC_FIELDS

The distance transform and 3D connected components are scipy.ndimage's; the marching-cubes
surface area is a 256-entry table (nwwatch.volume.surface).
"""

from nwwatch.volume.crosscheck import otsu_threshold, reference_mask, threshold_agreement
from nwwatch.volume.edt import distance_transform_edt
from nwwatch.volume.labeling import label_volume
from nwwatch.volume.metrics import (
    DEFAULT_ENVELOPE_RADIUS_PX,
    VOLUME_METRIC_FIELDS,
    VOLUME_METRICS_VERSION,
    VolumeMetrics,
    grain_envelope,
    volume_metrics,
)
from nwwatch.volume.segment import (
    DEFAULT_MARGIN_PX,
    DEFAULT_MIN_COMPONENT_VOXELS,
    SEGMENTATION_VERSION,
    VolumeModelError,
    VolumeOptions,
    VolumeSegmentation,
    check_volume_model,
    clean_mask,
    segment_volume,
    smooth_along_z,
)
from nwwatch.volume.slab import INPUT_SLICES_KEY, model_input_slices, slab_indices, slab_stack
from nwwatch.volume.surface import surface_area
from nwwatch.volume.verdict import (
    AGREEMENT_WARN_BELOW,
    MIN_LABELED_PIXELS,
    REASON_CODES,
    UNCERTAIN_BAND,
    UNCERTAIN_WARN_FRACTION,
    MaskVerdict,
    assess_mask,
)

__all__ = [
    "AGREEMENT_WARN_BELOW",
    "DEFAULT_ENVELOPE_RADIUS_PX",
    "DEFAULT_MARGIN_PX",
    "DEFAULT_MIN_COMPONENT_VOXELS",
    "INPUT_SLICES_KEY",
    "MIN_LABELED_PIXELS",
    "REASON_CODES",
    "SEGMENTATION_VERSION",
    "UNCERTAIN_BAND",
    "UNCERTAIN_WARN_FRACTION",
    "MaskVerdict",
    "VOLUME_METRICS_VERSION",
    "VOLUME_METRIC_FIELDS",
    "VolumeMetrics",
    "VolumeModelError",
    "VolumeOptions",
    "VolumeSegmentation",
    "assess_mask",
    "check_volume_model",
    "clean_mask",
    "distance_transform_edt",
    "grain_envelope",
    "label_volume",
    "model_input_slices",
    "otsu_threshold",
    "reference_mask",
    "segment_volume",
    "slab_indices",
    "slab_stack",
    "smooth_along_z",
    "surface_area",
    "threshold_agreement",
    "volume_metrics",
]
