"""Differentiable Siamese Augmentation (DSA) and the DC-style evaluation augmentation.

DSA (Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation", ICML 2021):
every call picks ONE transformation group uniformly at random from the strategy
``color_crop_cutout_flip_scale_rotate`` and applies it with random parameters. All transforms are
differentiable with respect to the pixels, so the gradient-matching loss can back-propagate through
the augmentation into the synthetic images. In the matching loop the real batch of a class and its
synthetic images share ONE draw ("Siamese"): the same group and the same parameters.

Every random number comes from a caller-supplied ``torch.Generator`` (the authors seeded theirs
from the clock); the global RNG is never touched. Everything is vectorised over the batch.

Example (the matching loop)::

    >>> import torch
    >>> from condense.augment import DSA
    >>> dsa = DSA()
    >>> g = torch.Generator().manual_seed(0)
    >>> real, syn = torch.randn(256, 3, 32, 32), torch.randn(10, 3, 32, 32, requires_grad=True)
    >>> draw = dsa.sample(g, 1, siamese=True)       # one group, one parameter set
    >>> real_aug, syn_aug = dsa.apply(real, draw), dsa.apply(syn, draw)
    >>> syn_aug.shape
    torch.Size([10, 3, 32, 32])
    >>> dsa(real, g).shape                           # evaluation: per-image parameters
    torch.Size([256, 3, 32, 32])

Groups and parameters (``x: (N, C, H, W) float32, normalised``; ``u ~ U[0, 1)``):

========  ===================================================================================
color     brightness ``x + (u₁ − 0.5)·brightness``; then saturation
          ``(x − m_c)·(u₂·saturation) + m_c`` with ``m_c`` the mean over channels (per pixel);
          then contrast ``(x − m)·(u₃ + contrast) + m`` with ``m`` the mean over (C, H, W)
crop      translate by integer shifts ``(s_h, s_w) ∈ [−S, S]²``, ``S = int(crop_ratio·size + 0.5)``,
          zero fill: ``out[i, j] = x[i + s_h, j + s_w]`` (0 outside)
cutout    zero a square of side ``int(cutout_ratio·size + 0.5)`` centred at a random pixel,
          clipped at the borders
flip      horizontal flip with probability ``flip_p``
scale     affine ``diag(s_x, s_y)``, ``s ~ U[1/scale_ratio, scale_ratio]`` (grid_sample, bilinear,
          zero padding, ``align_corners=True`` as in the authors' PyTorch version)
rotate    affine rotation by ``θ ~ U[−rotate_degrees, rotate_degrees]`` (positive = anticlockwise)
========  ===================================================================================

The draw stores ``u`` (not pixel counts) for crop and cutout, so one draw fits any image size;
the integers are derived in :meth:`DSA.apply` exactly as the authors' ``randint`` ranges.

This module holds the random policies (what is drawn, from which generator, and how a draw is
applied); the transforms themselves, with explicit parameters, are in
:mod:`condense.image_transforms` and re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from condense.errors import ConfigError
from condense.image_transforms import color, cutout, flip, rotate, scale, translate  # re-exported

__all__ = [
    "DSA_GROUPS",
    "DSAParams",
    "AugmentationDraw",
    "DSA",
    "DCAugment",
    "color",
    "translate",
    "cutout",
    "flip",
    "scale",
    "rotate",
]

DSA_GROUPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DC_GROUPS = ("crop", "scale", "rotate", "noise")


# --------------------------------------------------------------------------------------------
# DSA


@dataclass(frozen=True)
class DSAParams:
    """DSA hyper-parameters (the authors' ``ParamDiffAug`` defaults).

    ``strategy``: groups joined by ``_``; each call applies ONE of them, chosen uniformly
    (``"none"`` disables augmentation).
    """

    strategy: str = "color_crop_cutout_flip_scale_rotate"
    flip_p: float = 0.5
    scale_ratio: float = 1.2
    rotate_degrees: float = 15.0
    crop_ratio: float = 0.125
    cutout_ratio: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self) -> None:
        groups = self.groups
        unknown = [g for g in groups if g not in DSA_GROUPS]
        if unknown:
            raise ConfigError(
                f"unknown DSA group(s) {', '.join(unknown)} in strategy {self.strategy!r}; "
                f"known: {', '.join(DSA_GROUPS)}"
            )
        if len(set(groups)) != len(groups):
            raise ConfigError(f"DSA strategy {self.strategy!r} repeats a group")
        checks = [
            (0.0 <= self.flip_p <= 1.0, "flip_p must be in [0, 1]"),
            (self.scale_ratio >= 1.0, "scale_ratio must be >= 1"),
            (0.0 <= self.rotate_degrees <= 180.0, "rotate_degrees must be in [0, 180]"),
            (0.0 <= self.crop_ratio < 1.0, "crop_ratio must be in [0, 1)"),
            (0.0 <= self.cutout_ratio <= 1.0, "cutout_ratio must be in [0, 1]"),
            (self.brightness >= 0.0, "brightness must be >= 0"),
            (self.saturation >= 0.0, "saturation must be >= 0"),
            (self.contrast >= 0.0, "contrast must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"DSAParams: {message}")

    @property
    def groups(self) -> tuple[str, ...]:
        """The strategy's groups, in order; ``()`` for ``"none"``."""
        if self.strategy.strip().lower() in ("", "none"):
            return ()
        return tuple(self.strategy.split("_"))


@dataclass(frozen=True, eq=False)
class AugmentationDraw:
    """One random draw: the chosen ``group`` and its parameters, each a ``(B,)`` tensor.

    ``B`` = the batch size, or 1 for a Siamese draw (one parameter set for every image, which
    :meth:`DSA.apply` broadcasts to any batch). Parameters by group (``u ~ U[0, 1)``):
    color: ``brightness_shift, saturation_factor, contrast_factor``; crop: ``u_h, u_w``;
    cutout: ``u_h, u_w``; flip: ``flip`` (bool); scale: ``sx, sy``; rotate: ``angle`` (radians);
    none: no parameters.
    """

    group: str
    params: dict[str, Tensor] = field(default_factory=dict)
    siamese: bool = False

    @property
    def batch_size(self) -> int:
        """B: how many parameter sets the draw holds (1 for a Siamese draw)."""
        return next((int(t.shape[0]) for t in self.params.values()), 1)


class DSA:
    """Differentiable Siamese Augmentation over a seeded generator.

    ``sample`` draws (group, parameters); ``apply`` applies a draw (differentiable in ``x``);
    ``dsa(x, generator, siamese=False)`` does both.
    """

    def __init__(self, params: DSAParams | None = None) -> None:
        self.params = params if params is not None else DSAParams()
        if not isinstance(self.params, DSAParams):
            raise ConfigError(f"DSA expects a DSAParams, got {type(self.params).__name__}")

    @property
    def groups(self) -> tuple[str, ...]:
        return self.params.groups

    def __repr__(self) -> str:
        return f"DSA({self.params!r})"

    def sample(
        self,
        generator: torch.Generator,
        batch_size: int,
        siamese: bool = False,
        group: str | None = None,
    ) -> AugmentationDraw:
        """Draw one group uniformly from the strategy and its parameters for ``batch_size`` images.

        ``siamese=True``: one parameter set (B = 1), shared by every image of any batch it is
        applied to. ``group`` forces the group (any of :data:`DSA_GROUPS`; for tests and figures).
        All draws use ``generator`` (on its device); the global RNG is untouched.
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        p = self.params
        if group is None:
            if not self.groups:
                return AugmentationDraw("none", {}, siamese)
            k = int(torch.randint(len(self.groups), (1,), generator=generator, device=generator.device))
            group = self.groups[k]
        elif group not in DSA_GROUPS:
            raise ConfigError(f"unknown DSA group {group!r}; known: {', '.join(DSA_GROUPS)}")
        b = 1 if siamese else batch_size

        def rand() -> Tensor:
            return torch.rand(b, generator=generator, device=generator.device)

        if group == "color":
            params = {
                "brightness_shift": (rand() - 0.5) * p.brightness,
                "saturation_factor": rand() * p.saturation,
                "contrast_factor": rand() + p.contrast,
            }
        elif group in ("crop", "cutout"):
            params = {"u_h": rand(), "u_w": rand()}
        elif group == "flip":
            params = {"flip": rand() < p.flip_p}
        elif group == "scale":
            lo = 1.0 / p.scale_ratio
            params = {"sx": rand() * (p.scale_ratio - lo) + lo, "sy": rand() * (p.scale_ratio - lo) + lo}
        else:  # rotate
            params = {"angle": (rand() - 0.5) * 2.0 * math.radians(p.rotate_degrees)}
        return AugmentationDraw(group, params, siamese)

    def apply(self, x: Tensor, draw: AugmentationDraw) -> Tensor:
        """Apply ``draw`` to ``x: (N, C, H, W) float32, normalised``; differentiable in ``x``.

        A Siamese draw (B = 1) applies the same transform to every image of any batch size; a
        per-image draw needs B = N.
        """
        if x.ndim != 4:
            raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        if draw.batch_size not in (1, n):
            raise ValueError(f"draw holds {draw.batch_size} parameter sets for a batch of {n} images")
        p, q = self.params, draw.params
        g = draw.group
        if g == "none":
            return x
        if g == "color":
            return color(x, q["brightness_shift"], q["saturation_factor"], q["contrast_factor"])
        if g == "crop":
            sh, sw = int(h * p.crop_ratio + 0.5), int(w * p.crop_ratio + 0.5)
            # ⌊u·(2S+1)⌋ − S is uniform on the integers [−S, S], like randint(−S, S + 1)
            shift_h = _uniform_int(q["u_h"], 2 * sh + 1) - sh
            shift_w = _uniform_int(q["u_w"], 2 * sw + 1) - sw
            return translate(x, shift_h, shift_w)
        if g == "cutout":
            size = (int(h * p.cutout_ratio + 0.5), int(w * p.cutout_ratio + 0.5))
            # centres uniform on [0, H − size % 2], like the authors' randint(0, H + 1 − size % 2)
            centre_h = _uniform_int(q["u_h"], h + 1 - size[0] % 2)
            centre_w = _uniform_int(q["u_w"], w + 1 - size[1] % 2)
            return cutout(x, centre_h, centre_w, size)
        if g == "flip":
            return flip(x, q["flip"])
        if g == "scale":
            return scale(x, q["sx"], q["sy"])
        if g == "rotate":
            return rotate(x, q["angle"])
        raise ConfigError(f"unknown DSA group {g!r}")

    def __call__(
        self, x: Tensor, generator: torch.Generator, siamese: bool = False, group: str | None = None
    ) -> Tensor:
        """``apply(x, sample(generator, len(x), siamese, group))``."""
        return self.apply(x, self.sample(generator, x.shape[0], siamese, group))


def _uniform_int(u: Tensor, count: int) -> Tensor:
    """Map ``u ~ U[0, 1)`` to integers uniform on ``{0, …, count − 1}``."""
    return torch.clamp((u * count).floor().long(), 0, count - 1)


# --------------------------------------------------------------------------------------------
# DC evaluation augmentation


class DCAugment:
    """The DC authors' evaluation augmentation (their ``augment``), vectorised and seeded.

    Each image gets ONE transform chosen uniformly from ``strategy`` (groups joined by ``_`` from
    ``crop``, ``scale``, ``rotate``, ``noise``; ``"none"`` = identity):

    - crop: translate by integer shifts in ``[−crop, crop]²`` pixels, zero fill;
    - scale: zoom about the centre by independent height / width factors ``U[1 − scale, 1 + scale]``
      (bilinear, zero fill);
    - rotate: rotation by an integer number of degrees in ``[−rotate, rotate)`` (as the authors'
      ``randint``) about the centre, zero fill;
    - noise: ``x + noise · N(0, 1)``.

    Differences from the authors' per-image loop, chosen for speed and symmetry: crop shifts are
    symmetric (theirs ``[−crop, crop − 1]``); padding is 0 (theirs the batch's channel mean, ≈ 0 for
    normalised data); scale and rotate use bilinear ``grid_sample`` (theirs nearest-neighbour
    resizing and ``scipy.ndimage.rotate``). The MNIST protocol of the authors uses
    ``crop_scale_rotate``; ``crop_noise`` is theirs for ConvNetBN.

    ``aug(x, generator)``: ``x: (N, C, H, W) float32, normalised`` -> same shape.
    """

    def __init__(
        self,
        strategy: str = "crop_scale_rotate_noise",
        crop: int = 4,
        scale: float = 0.2,
        rotate: float = 45,
        noise: float = 0.001,
    ) -> None:
        if not isinstance(strategy, str):
            raise ConfigError(f"DCAugment strategy must be a string, got {strategy!r}")
        groups = () if strategy.strip().lower() in ("", "none") else tuple(strategy.split("_"))
        unknown = [g for g in groups if g not in DC_GROUPS]
        if unknown:
            raise ConfigError(
                f"unknown DC augmentation(s) {', '.join(unknown)} in {strategy!r}; "
                f"known: {', '.join(DC_GROUPS)}"
            )
        if len(set(groups)) != len(groups):
            raise ConfigError(f"DC augmentation strategy {strategy!r} repeats a transform")
        if not isinstance(crop, int) or crop < 0:
            raise ConfigError(f"DCAugment crop must be a non-negative int, got {crop!r}")
        if not 0.0 <= scale < 1.0:
            raise ConfigError(f"DCAugment scale must be in [0, 1), got {scale!r}")
        if not 0.0 <= rotate <= 180.0:
            raise ConfigError(f"DCAugment rotate must be in [0, 180] degrees, got {rotate!r}")
        if noise < 0.0:
            raise ConfigError(f"DCAugment noise must be >= 0, got {noise!r}")
        self.strategy, self.groups = strategy, groups
        self.crop, self.scale, self.rotate, self.noise = crop, float(scale), float(rotate), float(noise)

    def __repr__(self) -> str:
        return (
            f"DCAugment(strategy={self.strategy!r}, crop={self.crop}, scale={self.scale}, "
            f"rotate={self.rotate}, noise={self.noise})"
        )

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
        if not self.groups:
            return x
        n = x.shape[0]
        dev = generator.device

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=dev)

        # A fixed sequence of draws per call (every parameter for every image), so the stream does
        # not depend on which transform each image got.
        choice = torch.randint(len(self.groups), (n,), generator=generator, device=dev).to(x.device)
        crop_h = _uniform_int(rand(n), 2 * self.crop + 1) - self.crop
        crop_w = _uniform_int(rand(n), 2 * self.crop + 1) - self.crop
        zoom_h = 1.0 - self.scale + 2.0 * self.scale * rand(n)
        zoom_w = 1.0 - self.scale + 2.0 * self.scale * rand(n)
        rot = int(self.rotate)
        if rot > 0:
            degrees = torch.randint(-rot, rot, (n,), generator=generator, device=dev)
        else:
            degrees = torch.zeros(n, dtype=torch.long, device=dev)
        noise = torch.randn(x.shape, generator=generator, device=dev) if "noise" in self.groups else None

        out = x.clone()
        for k, group in enumerate(self.groups):
            idx = (choice == k).nonzero().flatten()  # images that get this transform
            if idx.numel() == 0:
                continue
            sub = x[idx]
            ic = idx.to(dev)
            if group == "crop":
                out[idx] = translate(sub, crop_h[ic], crop_w[ic])
            elif group == "scale":
                # zoom by f: the output at normalised u samples the input at u / f
                out[idx] = scale(sub, 1.0 / zoom_w[ic], 1.0 / zoom_h[ic], align_corners=False)
            elif group == "rotate":
                out[idx] = rotate(sub, torch.deg2rad(degrees[ic].float()), align_corners=False)
            else:  # noise
                assert noise is not None
                out[idx] = sub + self.noise * noise[ic].to(x.device, x.dtype)
        return out
