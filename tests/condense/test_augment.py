"""Tests for condense.augment: DSA (Siamese, seeded, differentiable, correct) and DCAugment."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import condense.augment as augment
from condense.augment import (
    DSA,
    DSA_GROUPS,
    AugmentationDraw,
    DCAugment,
    DSAParams,
    color,
    cutout,
    flip,
    rotate,
    scale,
    translate,
)
from condense.errors import ConfigError



def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=gen(1000 + seed))


# ---------------------------------------------------------------------------------------------
# slow per-image references


def ref_translate(img: torch.Tensor, dh: int, dw: int) -> torch.Tensor:
    """out[i, j] = img[i + dh, j + dw], zero outside: a roll followed by zeroing what wrapped."""
    _, h, w = img.shape
    out = torch.roll(img, shifts=(-dh, -dw), dims=(1, 2))
    if dh > 0:
        out[:, h - dh :, :] = 0
    elif dh < 0:
        out[:, : -dh, :] = 0
    if dw > 0:
        out[:, :, w - dw :] = 0
    elif dw < 0:
        out[:, :, : -dw] = 0
    return out


def ref_cutout(img: torch.Tensor, ch: int, cw: int, size: tuple[int, int]) -> torch.Tensor:
    out = img.clone()
    _, h, w = img.shape
    for i in range(h):
        for j in range(w):
            top, left = ch - size[0] // 2, cw - size[1] // 2
            if top <= i < top + size[0] and left <= j < left + size[1]:
                out[:, i, j] = 0
    return out


# ---------------------------------------------------------------------------------------------
# (a) Siamese consistency


@pytest.mark.parametrize("group", DSA_GROUPS)
def test_siamese_real_and_synthetic_get_the_same_transform(group):
    dsa = DSA()
    real = images(32, seed=1)
    syn = images(3, seed=2)
    syn[0] = real[0]
    for seed in range(5):
        draw = dsa.sample(gen(seed), 1, siamese=True, group=group)
        assert draw.group == group and draw.siamese and draw.batch_size == 1
        real_aug, syn_aug = dsa.apply(real, draw), dsa.apply(syn, draw)
        assert real_aug.shape == real.shape and syn_aug.shape == syn.shape
        torch.testing.assert_close(real_aug[0], syn_aug[0], rtol=0, atol=1e-6)
        # every image of the batch gets the same transform: augmenting one image alone is the same
        torch.testing.assert_close(real_aug[5:6], dsa.apply(real[5:6], draw), rtol=0, atol=1e-6)


def test_siamese_draw_chooses_one_group_for_both_batches():
    dsa = DSA()
    real, syn = images(64, seed=3), images(10, seed=4)
    draw = dsa.sample(gen(7), 1, siamese=True)
    syn_aug = dsa.apply(syn, draw)
    real_aug = dsa.apply(torch.cat([syn, real]), draw)
    torch.testing.assert_close(real_aug[:10], syn_aug, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# (b) seed determinism, no global RNG


def test_same_seed_is_bit_identical_and_other_seeds_differ():
    dsa = DSA()
    x = images(16)
    for seed in range(6):
        a, b = dsa(x, gen(seed)), dsa(x, gen(seed))
        assert torch.equal(a, b)
    outs = [dsa(x, gen(seed)) for seed in range(6)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])


def test_global_rng_is_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    dsa = DSA()
    x = images(8)
    for seed in range(12):
        dsa(x, gen(seed))
        dsa(x, gen(seed), siamese=True)
    DCAugment()(x, gen(0))
    assert torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------------------------------------
# (c) gradients reach the input


@pytest.mark.parametrize("siamese", [False, True])
@pytest.mark.parametrize("group", DSA_GROUPS)
def test_gradient_flows_to_input(group, siamese):
    dsa = DSA()
    x = images(6).requires_grad_(True)
    weights = torch.randn(6, 3, 16, 16, generator=gen(5))
    (dsa(x, gen(3), siamese=siamese, group=group) * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# (d) correctness against per-image references


def test_flip_equals_torch_flip():
    x = images(4)
    out = flip(x, torch.tensor([True, False, True, False]))
    torch.testing.assert_close(out[0], torch.flip(x[0], dims=[2]), rtol=0, atol=0)
    torch.testing.assert_close(out[1], x[1], rtol=0, atol=0)
    dsa = DSA()
    draw = dsa.sample(gen(0), 4, group="flip")
    out = dsa.apply(x, draw)
    for i in range(4):
        expected = torch.flip(x[i], dims=[2]) if draw.params["flip"][i] else x[i]
        assert torch.equal(out[i], expected)


@pytest.mark.parametrize("dh, dw", [(0, 0), (2, -1), (-3, 2), (5, 5), (-16, 0), (1, 20)])
def test_translate_equals_rolled_and_zero_filled(dh, dw):
    x = images(2, h=12, w=10)
    out = translate(x, dh, dw)
    for i in range(2):
        torch.testing.assert_close(out[i], ref_translate(x[i], dh, dw), rtol=0, atol=0)


def test_dsa_crop_matches_reference_per_image():
    dsa = DSA()
    x = images(20, h=16, w=16)
    draw = dsa.sample(gen(9), 20, group="crop")
    out = dsa.apply(x, draw)
    s = int(16 * 0.125 + 0.5)  # 2
    shifts = set()
    for i in range(20):
        dh = min(int(draw.params["u_h"][i] * (2 * s + 1)), 2 * s) - s
        dw = min(int(draw.params["u_w"][i] * (2 * s + 1)), 2 * s) - s
        assert -s <= dh <= s and -s <= dw <= s
        shifts.add((dh, dw))
        torch.testing.assert_close(out[i], ref_translate(x[i], dh, dw), rtol=0, atol=0)
    assert len(shifts) > 5  # per-image shifts


@pytest.mark.parametrize(
    "ch, cw, size", [(8, 8, (8, 8)), (0, 0, (8, 8)), (15, 3, (8, 8)), (16, 16, (8, 8)), (5, 9, (7, 7))]
)
def test_cutout_zeroes_exactly_the_square(ch, cw, size):
    x = images(2) + 10.0  # no accidental zeros
    out = cutout(x, ch, cw, size)
    for i in range(2):
        torch.testing.assert_close(out[i], ref_cutout(x[i], ch, cw, size), rtol=0, atol=0)
    top, left = max(ch - size[0] // 2, 0), max(cw - size[1] // 2, 0)
    bottom, right = min(ch - size[0] // 2 + size[0], 16), min(cw - size[1] // 2 + size[1], 16)
    assert int((out[0, 0] == 0).sum()) == (bottom - top) * (right - left)


def test_dsa_cutout_square_has_side_half_the_image():
    dsa = DSA()
    x = images(8, h=16, w=16) + 10.0
    draw = dsa.sample(gen(4), 8, group="cutout")
    out = dsa.apply(x, draw)
    for i in range(8):
        ch = int(draw.params["u_h"][i] * 17)  # size 8 (even): centres in [0, 16]
        cw = int(draw.params["u_w"][i] * 17)
        torch.testing.assert_close(out[i], ref_cutout(x[i], ch, cw, (8, 8)), rtol=0, atol=0)


@pytest.mark.parametrize("size", [8, 15, 28])
def test_rotate_90_degrees_matches_rot90(size):
    x = images(3, h=size, w=size)
    torch.testing.assert_close(rotate(x, math.pi / 2), torch.rot90(x, 1, dims=(2, 3)), rtol=0, atol=1e-4)
    torch.testing.assert_close(rotate(x, -math.pi / 2), torch.rot90(x, -1, dims=(2, 3)), rtol=0, atol=1e-4)
    torch.testing.assert_close(rotate(x, 0.0), x, rtol=0, atol=1e-4)


def test_scale_one_is_identity():
    x = images(4, h=28, w=28)
    torch.testing.assert_close(scale(x, 1.0, 1.0), x, rtol=0, atol=1e-4)
    # and a per-image scale equals scaling each image on its own
    sx, sy = torch.tensor([0.9, 1.0, 1.1, 1.2]), torch.tensor([1.2, 1.0, 0.85, 1.0])
    out = scale(x, sx, sy)
    for i in range(4):
        torch.testing.assert_close(out[i : i + 1], scale(x[i : i + 1], sx[i], sy[i]), rtol=0, atol=1e-6)


def test_color_neutral_is_identity_and_formula_matches():
    x = images(4)
    torch.testing.assert_close(color(x, 0.0, 1.0, 1.0), x, rtol=0, atol=1e-6)
    b, s, c = 0.3, 1.7, 0.8
    ref = x + b
    m_c = ref.mean(dim=1, keepdim=True)
    ref = (ref - m_c) * s + m_c
    m = ref.mean(dim=(1, 2, 3), keepdim=True)
    ref = (ref - m) * c + m
    torch.testing.assert_close(color(x, b, s, c), ref)


def test_color_draw_ranges():
    draw = DSA().sample(gen(0), 2000, group="color")
    b, s, c = (draw.params[k] for k in ("brightness_shift", "saturation_factor", "contrast_factor"))
    assert -0.5 <= b.min() and b.max() < 0.5 and b.abs().max() > 0.45
    assert 0.0 <= s.min() and s.max() < 2.0 and s.max() > 1.9
    assert 0.5 <= c.min() and c.max() < 1.5 and c.min() < 0.55


def test_scale_and_rotate_draw_ranges():
    dsa = DSA()
    sc = dsa.sample(gen(0), 2000, group="scale").params
    for t in (sc["sx"], sc["sy"]):
        assert 1 / 1.2 <= t.min() and t.max() < 1.2
    angle = dsa.sample(gen(0), 2000, group="rotate").params["angle"]
    assert angle.abs().max() <= math.radians(15) and angle.abs().max() > math.radians(14)


# ---------------------------------------------------------------------------------------------
# (e) non-Siamese draws differ across images, (f) group choice is uniform


@pytest.mark.parametrize("group", ["color", "crop", "cutout", "scale", "rotate"])
def test_non_siamese_parameters_differ_across_images(group):
    draw = DSA().sample(gen(1), 16, siamese=False, group=group)
    assert draw.batch_size == 16
    for t in draw.params.values():
        assert t.shape == (16,) and len(torch.unique(t)) > 8
    flips = DSA().sample(gen(1), 64, group="flip").params["flip"]
    assert 0 < int(flips.sum()) < 64


def test_non_siamese_outputs_differ_across_identical_images():
    x = images(1).expand(8, -1, -1, -1).contiguous()
    out = DSA()(x, gen(2), group="rotate")
    assert not torch.allclose(out[0], out[1])


def test_group_choice_is_uniform():
    dsa = DSA()
    g = gen(2024)
    counts = dict.fromkeys(DSA_GROUPS, 0)
    n = 600
    for _ in range(n):
        counts[dsa.sample(g, 1, siamese=True).group] += 1
    expected = n / len(DSA_GROUPS)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 20.5, counts  # 5 degrees of freedom: P(chi2 > 20.5) ~ 0.001


def test_strategy_subset_and_none():
    dsa = DSA(DSAParams(strategy="flip_rotate"))
    groups = {dsa.sample(gen(s), 1, siamese=True).group for s in range(40)}
    assert groups == {"flip", "rotate"}
    none = DSA(DSAParams(strategy="none"))
    x = images(3)
    assert none(x, gen(0)) is x


# ---------------------------------------------------------------------------------------------
# API errors


def test_bad_params_raise_config_error():
    with pytest.raises(ConfigError, match="unknown DSA group"):
        DSAParams(strategy="color_blur")
    with pytest.raises(ConfigError):
        DSAParams(flip_p=1.5)
    with pytest.raises(ConfigError):
        DSAParams(scale_ratio=0.5)
    with pytest.raises(ConfigError):
        DSA().sample(gen(0), 4, group="blur")
    with pytest.raises(ConfigError):
        DCAugment(strategy="crop_blur")


def test_draw_batch_mismatch_raises():
    dsa = DSA()
    draw = dsa.sample(gen(0), 4, group="rotate")
    with pytest.raises(ValueError, match="parameter sets"):
        dsa.apply(images(5), draw)


def test_explicit_draw_can_be_built_by_hand():
    dsa = DSA()
    x = images(2)
    draw = AugmentationDraw("rotate", {"angle": torch.tensor([math.pi / 2])}, siamese=True)
    torch.testing.assert_close(dsa.apply(x, draw), torch.rot90(x, 1, dims=(2, 3)), rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# DCAugment


def test_dc_augment_is_seeded_and_shape_preserving():
    aug = DCAugment()
    x = images(32, c=1, h=28, w=28)
    a, b = aug(x, gen(0)), aug(x, gen(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, aug(x, gen(1)))
    assert torch.isfinite(a).all()


def test_dc_augment_crop_is_a_translation_of_at_most_4_pixels():
    aug = DCAugment(strategy="crop")
    x = images(6, c=1, h=28, w=28) + 10.0
    out = aug(x, gen(3))
    for i in range(6):
        matches = [
            (dh, dw)
            for dh in range(-4, 5)
            for dw in range(-4, 5)
            if torch.equal(out[i], ref_translate(x[i], dh, dw))
        ]
        assert len(matches) == 1


def test_dc_augment_each_image_gets_one_transform():
    aug = DCAugment(strategy="crop_noise", noise=0.001)
    x = images(64, c=1, h=28, w=28) + 10.0
    out = aug(x, gen(5))
    n_noise = 0
    for i in range(64):
        diff = (out[i] - x[i]).abs().max()
        if 0 < diff < 0.01:  # noise only
            n_noise += 1
        else:  # a pure translation (possibly by 0)
            assert any(
                torch.equal(out[i], ref_translate(x[i], dh, dw)) for dh in range(-4, 5) for dw in range(-4, 5)
            )
    assert 10 < n_noise < 54


def test_dc_augment_scale_and_rotate_are_mild():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # a centred square survives zoom and rotation
    for strategy in ("scale", "rotate"):
        out = DCAugment(strategy=strategy)(x, gen(1))
        assert out[:, :, 13:15, 13:15].min() > 0.9
        assert torch.isfinite(out).all()


def test_module_docstring_example():
    result = doctest.testmod(augment, verbose=False)
    assert result.attempted > 0 and result.failed == 0
