"""The human ``reason`` of a measured angle: what the measurement noticed on the way (several
droplets, a frame-cut droplet, a facet oriented by a prior, a tilted wire, a gap, where the
image put the facet line, the wire's status), in the order the reason lists them."""

from __future__ import annotations


def result_notes(n_droplets: int, droplet_cut: bool, source: str, tilt_deg: float,
                 gap_px: float, edge, wire) -> tuple[list[str], str]:
    """(notes, the note on the image refinement alone ("" when there is none)).

    ``source``: what oriented the facet ("interface" or a prior); ``edge``: the
    :class:`nwwatch.measure.refine.EdgeRefinement`; ``wire``: the wire measurement
    (:class:`nwwatch.measure.wire.WireGeometry`), with ``status`` and ``note``."""
    notes = []
    if n_droplets > 1:
        notes.append(f"{n_droplets} droplets; measured the largest one on a wire")
    if droplet_cut:
        notes.append("droplet cut by the frame")
    if source != "interface":
        notes.append(f"facet oriented by the {source.replace('_', ' ')} (interface too short "
                     "to orient it)")
    if tilt_deg > 0:
        notes.append(f"facet seen as an ellipse: wire tilted ~{tilt_deg:.0f} deg out of "
                     "the image plane (apparent angle)")
    if gap_px > 0.5:
        notes.append(f"{gap_px:.1f} px gap between droplet and wire")
    edge_note = ""
    if edge.refined:
        # + 0.0: a shift that rounds to zero reads "+0.0", not "-0.0"
        edge_note = f"facet moved {round(edge.shift_px, 1) + 0.0:+.1f} px onto the image's edge"
    elif edge.status != "labels":
        edge_note = f"facet kept on the labels ({edge.status.replace('_', ' ')} in the image)"
    if edge_note:
        notes.append(edge_note)
    if wire.note:
        notes.append(f"wire {wire.status.replace('_', ' ')}: {wire.note}")
    return notes, edge_note
