import json

import pytest

from nwwatch.segment.contract import ModelMetadata, ModelMetadataError


def _meta(**kw):
    base = dict(kind="insitu", class_names=("background", "nanowire", "droplet"), arch="unet",
                paradigm="supervised", size_multiple=16)
    base.update(kw)
    return ModelMetadata(**base)


def test_round_trip():
    meta = _meta(validation_metrics={"miou": 0.98}, extra={"quantized": "int8"})
    assert ModelMetadata.from_json(meta.to_json()) == meta


@pytest.mark.parametrize(
    "change, key",
    [
        ({"kind": "movie"}, "kind"),
        ({"size_multiple": 0}, "size_multiple"),
        ({"class_names": ["x"]}, "class_names"),
        ({"normalization_scope": "slice"}, "normalization_scope"),
    ],
)
def test_invalid_values_name_the_key(change, key):
    raw = json.loads(_meta().to_json())
    raw.update(change)
    with pytest.raises(ModelMetadataError, match=key):
        ModelMetadata.from_json(json.dumps(raw))


@pytest.mark.parametrize(
    "change, key",
    [({"normalization": "zscore"}, "normalization"), ({"contract_version": 99}, "contract_version"),
     ({"bogus": 1}, "bogus")],
)
def test_incompatible_models_are_refused(change, key):
    raw = json.loads(_meta().to_json())
    raw.update(change)
    with pytest.raises(ModelMetadataError, match=key):
        ModelMetadata.from_json(json.dumps(raw))


def test_missing_key_and_bad_json():
    raw = json.loads(_meta().to_json())
    del raw["arch"]
    with pytest.raises(ModelMetadataError, match="arch"):
        ModelMetadata.from_json(json.dumps(raw))
    with pytest.raises(ModelMetadataError, match="JSON"):
        ModelMetadata.from_json("{not json")
