"""Every paradigm learns on a fixed tiny batch; model C keeps its encoder frozen; pseudo-labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import make_scene

from nwwatch.normalize import normalize_image
from training.config import TrainConfig
from training.paradigms import PARADIGMS
from training.paradigms.pseudo_label import pseudo_label

torch.set_num_threads(1)
TINY = {"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]}


def _batch(n=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = zip(*(make_scene(rng, size) for _ in range(n)), strict=True)
    x = torch.from_numpy(np.stack([normalize_image(i) for i in images]))[:, None]
    return x, torch.from_numpy(np.stack(labels).astype(np.int64))


def _fit(paradigm, steps=8, lr=0.05):
    torch.manual_seed(0)
    x, y = _batch(n=2)
    unlabeled = _batch(n=2, seed=1)[0]
    optimizer = torch.optim.SGD(paradigm.trainable_parameters(), lr=lr, momentum=0.9)
    paradigm.train_mode()
    losses = []
    for step in range(steps):
        loss, logs = paradigm.training_loss(x, y, unlabeled, epoch=step / 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["loss"])
    return losses


@pytest.mark.parametrize("name", ["supervised", "cct", "pseudo-label", "contrastive"])
def test_loss_falls_on_a_fixed_batch(name):
    torch.manual_seed(0)
    config = TrainConfig(out="unused.onnx", paradigm=name, model_options=TINY, seed=0,
                         rampup_epochs=1.0, embedding_dim=8, max_anchors=512, max_pixels=256)
    losses = _fit(PARADIGMS[name](config, 3))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses


def test_cct_pspnet_uses_all_seven_perturbations():
    config = TrainConfig(out="unused.onnx", paradigm="cct", arch="pspnet",
                         model_options={"layers": [1, 1, 1, 1], "base_width": 4,
                                        "ppm_channels": 8})
    paradigm = PARADIGMS["cct"](config, 3)
    assert len(paradigm.aux) == 7
    x, y = _batch(n=2)
    loss, logs = paradigm.training_loss(x, y, x, epoch=20.0)
    loss.backward()
    assert logs["w_u"] == 1.0 and logs["unsup"] > 0


def test_cct_unet_skips_option():
    config = TrainConfig(out="unused.onnx", paradigm="cct", model_options=TINY,
                         perturb_skips=True, aux_per_perturbation=2)
    paradigm = PARADIGMS["cct"](config, 3)
    assert paradigm.perturbation_names == ("dropout", "dropout", "feature_drop", "feature_drop",
                                           "feature_noise", "feature_noise")
    x, y = _batch(n=2)
    loss, _ = paradigm.training_loss(x, y, x, epoch=0.0)
    assert torch.isfinite(loss)


def test_model_c_freezes_weights_and_batchnorm_statistics(tmp_path):
    from training.checkpoint import save_checkpoint

    teacher = PARADIGMS["supervised"](TrainConfig(out="t.onnx", model_options=TINY), 3)
    save_checkpoint(tmp_path / "sup.pt", {"inference": teacher.inference_spec(),
                                          "inference_state": teacher.model.state_dict()})
    config = TrainConfig(out="c.onnx", paradigm="cct", model_options=TINY,
                         frozen_encoder=str(tmp_path / "sup.pt"))
    paradigm = PARADIGMS["cct"](config, 3)
    before = {k: v.clone() for k, v in paradigm.model.encoder.state_dict().items()}
    for k, v in teacher.model.encoder.state_dict().items():
        assert torch.equal(before[k], v)
    _fit(paradigm, steps=3)
    after = paradigm.model.encoder.state_dict()
    for k, v in before.items():   # weights AND running_mean / running_var unchanged
        assert torch.equal(v, after[k]), k
    assert not paradigm.model.encoder.training


def test_a_cct_checkpoint_gives_the_encoder_of_the_model_it_exports(tmp_path):
    # A frozen encoder from a cct run (not model C, whose encoder is a supervised run's) is
    # the encoder of that run's exported model, loaded and frozen as a supervised one is.
    from training.checkpoint import save_checkpoint

    first = PARADIGMS["cct"](TrainConfig(out="b.onnx", paradigm="cct", model_options=TINY), 3)
    _fit(first, steps=2)
    save_checkpoint(tmp_path / "cct.pt", {"inference": first.inference_spec(),
                                          "inference_state": first.inference_model()
                                          .state_dict()})
    second = PARADIGMS["cct"](TrainConfig(out="c.onnx", paradigm="cct", model_options=TINY,
                                          frozen_encoder=str(tmp_path / "cct.pt"), seed=1), 3)
    _fit(second, steps=2)
    for k, v in first.model.encoder.state_dict().items():
        assert torch.equal(second.model.encoder.state_dict()[k], v), k
    assert not any(p.requires_grad for p in second.model.encoder.parameters())


def test_pseudo_label_threshold():
    probs = np.array([[[0.95, 0.5]], [[0.05, 0.3]], [[0.0, 0.2]]], np.float32)
    np.testing.assert_array_equal(pseudo_label(probs, 0.9), [[0, 255]])


def test_model_c_names_a_frozen_encoder_that_does_not_fit(tmp_path, monkeypatch):
    # before: another width list was torch's RuntimeError (a traceback listing 36 state keys),
    # and MODEL.onnx was "not a readable checkpoint (invalid load key, '\x08'.)"
    from training.checkpoint import save_checkpoint

    teacher = PARADIGMS["supervised"](TrainConfig(out="t.onnx", model_options=TINY), 3)
    save_checkpoint(tmp_path / "sup.pt", {"inference": teacher.inference_spec(),
                                          "inference_state": teacher.model.state_dict()})
    (tmp_path / "sup.onnx").write_bytes(b"\x08 an exported model")
    wide = {**TINY, "widths": [4, 8, 32]}
    with pytest.raises(ValueError, match=r"sup\.pt: its encoder does not fit this run's 'unet' "
                                         r"model: widths \[4, 8, 16\] in it, \[4, 8, 32\] here; "
                                         r"give --model-options '\{"):
        PARADIGMS["cct"](TrainConfig(out="c.onnx", paradigm="cct", model_options=wide,
                                     frozen_encoder=str(tmp_path / "sup.pt")), 3)
    with pytest.raises(ValueError, match=r"sup\.pt: .*'unet'.*give --arch unet"):
        PARADIGMS["cct"](TrainConfig(out="c.onnx", paradigm="cct", arch="pspnet",
                                     frozen_encoder=str(tmp_path / "sup.pt")), 3)
    # A contrastive run's checkpoint: named as such, not "give --arch unet" (its arch).
    save_checkpoint(tmp_path / "emb.pt", {"inference": {"type": "contrastive",
                                                        "config": teacher.inference_spec()
                                                        ["config"], "num_classes": 3},
                                          "inference_state": {}})
    with pytest.raises(ValueError, match=r"emb\.pt: frozen encoder must come from a "
                                         r"segmentation checkpoint, it holds a contrastive "
                                         r"model \(an embedding network, .*\): give the "
                                         r"MODEL\.pt of a --paradigm supervised run \(model "
                                         r"C\), or of a cct or pseudo-label run$"):
        PARADIGMS["cct"](TrainConfig(out="c.onnx", paradigm="cct", model_options=TINY,
                                     frozen_encoder=str(tmp_path / "emb.pt")), 3)
    # MODEL.onnx means the checkpoint next to it, as for --init.
    paradigm = PARADIGMS["cct"](TrainConfig(out="c.onnx", paradigm="cct", model_options=TINY,
                                            frozen_encoder=str(tmp_path / "sup.onnx")), 3)
    assert paradigm.provenance["frozen_encoder"] == str(tmp_path / "sup.pt")
    from nwwatch.filehash import file_sha256

    assert paradigm.provenance["frozen_encoder_sha256"] == file_sha256(tmp_path / "sup.pt")
    # A relative path is recorded in full, as --init's weights and the teacher are.
    monkeypatch.chdir(tmp_path)
    paradigm = PARADIGMS["cct"](TrainConfig(out="c.onnx", paradigm="cct", model_options=TINY,
                                            frozen_encoder="sup.pt"), 3)
    assert paradigm.provenance["frozen_encoder"] == str(tmp_path / "sup.pt")


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_pseudo_label_teacher_of_other_classes_is_refused(tmp_path, suffix):
    # before: only the number of classes was compared, so a teacher whose class 1 is the
    # nanowire labelled the droplets of data whose class 1 is the droplet
    from training_helpers import make_folder

    from training.engine import train

    data = make_folder(tmp_path / "data", n=3, size=32, unlabeled=2)
    train(TrainConfig(out=str(tmp_path / "t.onnx"), data=str(data), epochs=1,
                      steps_per_epoch=1, batch_size=2, crop=32, model_options=TINY,
                      val_fraction=0.0, exporter="legacy"), progress=False)
    # (a reordered in-situ list, the case this test was written for, is now refused by the
    # DATA folder's own check, nwwatch.io.dataset; other names still reach the teacher's)
    (data / "dataset.toml").write_text('classes = ["background", "wire", "drop"]\n')
    student = TrainConfig(out=str(tmp_path / "s.onnx"), data=str(data), epochs=1,
                          paradigm="pseudo-label", teacher=str(tmp_path / f"t{suffix}"),
                          steps_per_epoch=1, batch_size=2, crop=32, export=False,
                          model_options=TINY)
    with pytest.raises(ValueError, match=rf"t\{suffix}: the teacher's classes \['background', "
                                         r"'nanowire', 'droplet'\], the data's \['background', "
                                         r"'wire', 'drop'\]: where they mean the same "
                                         r"classes .* in DATA/dataset.toml \(classes = "
                                         r"\['background', 'nanowire', 'droplet'\]\)"):
        train(student, progress=False)
    assert not (tmp_path / "s.pt").exists()


def test_pseudo_labeling_says_how_much_the_teacher_kept(tmp_path):
    # before: a teacher confident on no pixel added nothing, and the student trained on DATA's
    # labels alone without a word (only extra.provenance.kept_fraction = 0 said so)
    from training_helpers import make_folder

    from training.engine import train

    data = make_folder(tmp_path / "data", n=3, size=32, unlabeled=2)
    train(TrainConfig(out=str(tmp_path / "t.onnx"), data=str(data), epochs=1,
                      steps_per_epoch=1, batch_size=2, crop=32, model_options=TINY,
                      val_fraction=0.0, exporter="legacy"), progress=False)
    for confidence, expected in ((1.0, "warning: the teacher "), (0.0, "pseudo-labels: ")):
        lines: list[str] = []
        student = TrainConfig(out=str(tmp_path / f"s{confidence}.onnx"), data=str(data),
                              epochs=1, paradigm="pseudo-label", confidence=confidence,
                              teacher=str(tmp_path / "t.pt"), steps_per_epoch=1, batch_size=2,
                              crop=32, export=False, model_options=TINY)
        train(student, progress=False, echo=lines.append)
        said = [line for line in lines if str(tmp_path / "t.pt") in line]
        assert len(said) == 1 and said[0].startswith(expected), lines
        assert "2 unlabeled image(s)" in said[0]
    assert "100.0 % of the pixels" in said[0]
    assert "no pseudo-label is kept" not in said[0]


def test_unlabeled_images_whose_pseudo_labels_keep_no_pixel_are_left_out(monkeypatch):
    """They stayed in the pool batches are drawn from: a share of the crops held no
    labeled pixel and added no loss."""
    import training.paradigms.pseudo_label as module
    from training.data import TrainingData

    sure = np.zeros((3, 16, 16), np.float32)
    sure[0] = 1.0  # all background, certain
    unsure = np.full((3, 16, 16), 1 / 3, np.float32)
    monkeypatch.setattr(module, "teacher_probabilities", lambda *a: [sure, unsure, sure])
    data = TrainingData("insitu", ("background", "nanowire", "droplet"), "image", [],
                        unlabeled=[np.zeros((16, 16), np.float32)] * 3)
    paradigm = module.PseudoLabelParadigm.__new__(module.PseudoLabelParadigm)
    paradigm.config = TrainConfig(out="x.onnx", paradigm="pseudo-label", teacher=__file__,
                                  confidence=0.9)
    paradigm.provenance = {}
    lines: list[str] = []
    items = paradigm.extra_labeled(data, torch.device("cpu"), lines.append)
    assert [item.stem for item in items] == ["pseudo_00000", "pseudo_00002"]
    assert paradigm.provenance["pseudo_labeled_images"] == 2
    assert lines[0].endswith("; 1 of them with no pixel kept are left out")


def test_perturb_skips_of_a_model_without_skips_is_refused():
    # before: `--paradigm cct --arch pspnet --perturb-skips` trained as if it were not given
    config = TrainConfig(out="unused.onnx", paradigm="cct", arch="pspnet", perturb_skips=True)
    with pytest.raises(ValueError, match=r"--perturb-skips perturbs a UNet's skip features; "
                                         r"a 'pspnet' model has none"):
        PARADIGMS["cct"](config, 3)
    # nor with perturbations none of which acts on skips (vat, cutout): taken silently before
    config = TrainConfig(out="unused.onnx", paradigm="cct", model_options=TINY,
                         perturb_skips=True, perturbations=("vat", "cutout"))
    with pytest.raises(ValueError, match=r"--perturbations vat,cutout has none of them"):
        PARADIGMS["cct"](config, 3)
