"""Architectures: registry, shapes at full resolution, size multiples, decoders, pooling."""

from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from training.models import MODELS, SegmentationModel, build_model  # noqa: E402
from training.models.pooling import adaptive_avg_pool2d, averaging_matrix  # noqa: E402

# Tiny tensors: one thread avoids OpenMP barrier stalls on a loaded two-core machine.
torch.set_num_threads(1)

#: Tiny widths so that every test runs in milliseconds; the structure is the real one.
TINY = {
    "unet": dict(widths=(2, 4, 4, 8)),
    "unet-paper": dict(widths=(2, 4, 8)),
    "pspnet": dict(base_width=4, layers=(1, 1, 1, 1), decoder_widths=(8, 8, 8)),
}


def tiny(arch: str, **kwargs) -> SegmentationModel:
    torch.manual_seed(0)
    return build_model(arch, **{**TINY[arch], **kwargs})


def test_registry_lists_every_architecture_and_rejects_unknown_names():
    assert set(MODELS) == {"unet", "unet-paper", "pspnet"} == set(TINY)
    with pytest.raises(KeyError) as info:
        build_model("segformer")
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("num_classes", [2, 3])
def test_logits_at_full_resolution_for_every_multiple(arch, num_classes):
    model = tiny(arch, num_classes=num_classes).eval()
    m = model.size_multiple
    for rows, cols in [(m, 2 * m), (3 * m, m), (2 * m, 5 * m)]:
        with torch.no_grad():
            logits = model(torch.rand(2, 1, rows, cols) * 2 - 1)
        assert logits.shape == (2, num_classes, rows, cols)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", sorted(TINY))
def test_size_multiple_is_the_total_downsampling(arch):
    model = tiny(arch).eval()
    m = model.size_multiple
    x = torch.rand(1, 1, 2 * m, 3 * m)
    with torch.no_grad():
        features = model.encoder(x)
    # The coarsest feature map is exactly 1/size_multiple of the input.
    coarsest = min(f.shape[-2] for f in features)
    assert coarsest * m == 2 * m
    assert min(f.shape[-1] for f in features) * m == 3 * m
    # A size that is not a multiple does not come back at full resolution (or fails).
    odd = (2 * m + m // 2, 3 * m)
    try:
        with torch.no_grad():
            shape = tuple(model(torch.rand(1, 1, *odd)).shape[-2:])
    except RuntimeError:
        shape = None
    assert shape != odd


def test_size_multiples_of_the_default_configurations():
    assert build_model("unet").size_multiple == 32
    assert build_model("unet-paper").size_multiple == 16
    assert tiny("pspnet").size_multiple == 8


def test_lean_unet_has_no_full_resolution_decoder_conv():
    model = build_model("unet", widths=(2, 4, 8)).eval()
    assert model.config["decoder_convs"] == [0, 1]
    assert isinstance(model.decoder.blocks[-1], torch.nn.Identity)
    assert model.decoder.head.in_channels == 4  # upsampled 2 + skip 2, read by the 1x1 head
    with torch.no_grad():
        assert model(torch.rand(1, 1, 8, 12)).shape == (1, 3, 8, 12)
    with pytest.raises(ValueError, match="decoder_convs"):
        build_model("unet", widths=(2, 4, 8), decoder_convs=(1, 0))


def test_unet_levels_and_skips():
    model = tiny("unet").eval()
    with torch.no_grad():
        features = model.encoder(torch.rand(1, 1, 32, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (2, 32, 64),  # full-resolution skip
        (4, 16, 32),
        (4, 8, 16),
        (8, 4, 8),  # bottleneck, last
    ]


def test_pspnet_output_stride_is_8():
    model = tiny("pspnet").eval()
    with torch.no_grad():
        stage1, stage2, ppm = model.encoder(torch.rand(1, 1, 64, 96))
    assert stage1.shape[-2:] == (16, 24)  # 1/4 after the stem
    assert stage2.shape[-2:] == (8, 12)  # 1/8
    assert ppm.shape[-2:] == (8, 12)  # stages 3, 4 dilated: still 1/8, not 1/32
    backbone = model.encoder.backbone
    assert backbone.stages[2][0].conv2.dilation == (2, 2)
    assert backbone.stages[3][0].conv2.dilation == (4, 4)
    assert all(s[0].conv1.stride == (1, 1) for s in backbone.stages[2:])


def test_default_paper_unet_and_pspnet_sizes():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 1.7e6 < count(build_model("unet-paper")) < 2.1e6
    lean = build_model("unet")
    assert count(lean) < 0.3e6
    psp = build_model("pspnet")
    resnet = count(psp.encoder.backbone)
    assert 21.0e6 < resnet < 21.5e6  # ResNet-34 convolutions without the fc layer (21.3 M)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_new_decoder_is_independent_and_structurally_equal(arch):
    model = tiny(arch)
    other = model.new_decoder()
    main = dict(model.decoder.named_parameters())
    fresh = dict(other.named_parameters())
    assert {k: v.shape for k, v in main.items()} == {k: v.shape for k, v in fresh.items()}
    main_ptrs = {p.data_ptr() for p in main.values()}
    assert main_ptrs.isdisjoint(p.data_ptr() for p in fresh.values())
    # Freshly initialised: convolution weights differ from the main decoder's.
    conv_weights = [k for k, v in main.items() if v.ndim == 4]
    assert any(not torch.equal(main[k], fresh[k]) for k in conv_weights)
    # Training the auxiliary decoder does not move the main one.
    before = {k: v.detach().clone() for k, v in main.items()}
    features = [f.detach() for f in model.encoder(torch.rand(2, 1, 32, 32))]
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    other(features).square().mean().backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.decoder.named_parameters())
    assert all(v.grad is None for v in model.decoder.parameters())


@pytest.mark.parametrize("arch", sorted(TINY))
def test_config_rebuilds_the_same_model(arch):
    model = tiny(arch).eval()
    rebuilt = build_model(**model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 1, 32, 64)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    assert rebuilt.arch == arch and rebuilt.size_multiple == model.size_multiple


def test_bad_options_are_rejected_with_the_option_name():
    with pytest.raises(ValueError, match="widths"):
        build_model("unet", widths=(8,))
    with pytest.raises(ValueError, match="encoder_convs"):
        build_model("unet", widths=(2, 4), encoder_convs=(1, 1, 1))
    with pytest.raises(ValueError, match="upsample"):
        build_model("unet", upsample="nearest")
    # Values of another JSON type, as --model-options gives them: named, not "invalid literal
    # for int() with base 10: 'a'" (a string) or truncated without a word (4.5 -> 4).
    for arch, name, value in (("unet", "widths", "abc"), ("unet", "widths", [4, 8.5]),
                              ("unet", "encoder_convs", [1, "2"]), ("pspnet", "layers", "1111"),
                              ("pspnet", "bins", [1, 2.5])):
        with pytest.raises(ValueError, match=rf"^{name}: expected a list of whole numbers, "
                                             rf"got {re.escape(repr(value))}$"):
            build_model(arch, **{name: value})


def test_unknown_options_are_a_key_error_listing_the_known_ones():
    # The same check (and text) as `nwwatch train --model-options`'s usage error.
    with pytest.raises(KeyError, match=r"'widths' for 'pspnet' \(known: base_width, bins, "
                                       r"decoder_widths, layers, ppm_channels\)"):
        build_model("pspnet", widths=(2, 4))
    with pytest.raises(KeyError, match=r"'widht' for 'unet' \(known: act, decoder_convs"):
        build_model("unet", widht=(2, 4))
    with pytest.raises(KeyError, match="'layers' for 'unet-paper'"):
        build_model("unet-paper", layers=(2,))
    with pytest.raises(KeyError, match="choose one of"):
        build_model("segformer", widths=(2, 4))


@pytest.mark.parametrize("length", [1, 2, 5, 6, 7, 12, 13, 29])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_averaging_matrix_pooling_equals_adaptive_avg_pool(length, bins):
    x = torch.randn(2, 3, length, length + 3)
    expected = F.adaptive_avg_pool2d(x, bins)
    assert torch.allclose(adaptive_avg_pool2d(x, bins), expected, atol=1e-6)
    matrix = averaging_matrix(length, bins, x)
    assert torch.allclose(matrix.sum(dim=1), torch.ones(bins))


def test_gradients_reach_every_parameter():
    for arch in TINY:
        model = tiny(arch).train()
        model(torch.rand(2, 1, 32, 32)).logsumexp(dim=1).mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, (arch, missing)
