"""Training paradigms, by the name ``nwwatch train --paradigm`` uses."""

from __future__ import annotations

from training.paradigms.base import ComposedModel, Paradigm, build_inference_model
from training.paradigms.cct import CCTParadigm
from training.paradigms.contrastive import ContrastiveParadigm
from training.paradigms.pseudo_label import PseudoLabelParadigm
from training.paradigms.supervised import SupervisedParadigm

PARADIGMS: dict[str, type[Paradigm]] = {
    "supervised": SupervisedParadigm,
    "cct": CCTParadigm,
    "pseudo-label": PseudoLabelParadigm,
    "contrastive": ContrastiveParadigm,
}

__all__ = ["PARADIGMS", "ComposedModel", "Paradigm", "build_inference_model"]
