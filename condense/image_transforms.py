"""Image transforms with explicit parameters, differentiable in the pixels: the building blocks
that :class:`~condense.augment.DSA` and :class:`~condense.augment.DCAugment` draw parameters for.

Every function takes ``x: (N, C, H, W) float32, normalised`` and per-image parameters as ``(B,)``
tensors (or Python scalars), ``B = N`` (one value per image) or ``B = 1`` (one value for the whole
batch, the Siamese case); no randomness here. Gradients flow to ``x`` through all of them
(``translate`` / ``cutout`` / ``flip`` by gathering and masking, ``scale`` / ``rotate`` by bilinear
``grid_sample`` with zero padding).

==========  ============================================================================
color       brightness, then saturation, then contrast (neutral: 0, 1, 1)
translate   integer shifts with zero fill (positive = content moves up / left)
cutout      zero a square around a centre pixel, clipped at the borders
flip        horizontal flip where a mask is True
scale       affine ``diag(s_x, s_y)`` (``s > 1`` zooms out)
rotate      affine rotation by an angle in radians, anticlockwise, about the centre
==========  ============================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["color", "translate", "cutout", "flip", "scale", "rotate"]


def _per_image(
    value: Tensor | float, n: int, ref: Tensor, name: str, dtype: torch.dtype | None = None
) -> Tensor:
    """``value`` as a (B,) tensor on ``ref``'s device, B ∈ {1, n} (B = 1 broadcasts over the batch)."""
    dtype = dtype if dtype is not None else ref.dtype
    t = torch.as_tensor(value, device=ref.device, dtype=dtype).reshape(-1)
    if t.numel() not in (1, n):
        raise ValueError(f"{name} has {t.numel()} values for a batch of {n} images; need 1 or {n}")
    return t


def color(
    x: Tensor,
    brightness_shift: Tensor | float,
    saturation_factor: Tensor | float,
    contrast_factor: Tensor | float,
) -> Tensor:
    """Brightness, then saturation, then contrast, with explicit per-image values.

    ``x: (N, C, H, W)``; each parameter ``(B,)`` with B ∈ {1, N}:
    ``x ← x + b``; ``x ← (x − mean_C(x))·s + mean_C(x)``; ``x ← (x − mean_CHW(x))·c + mean_CHW(x)``.
    Neutral values: ``b = 0, s = 1, c = 1``.
    """
    n = x.shape[0]
    b = _per_image(brightness_shift, n, x, "brightness_shift").view(-1, 1, 1, 1)
    s = _per_image(saturation_factor, n, x, "saturation_factor").view(-1, 1, 1, 1)
    c = _per_image(contrast_factor, n, x, "contrast_factor").view(-1, 1, 1, 1)
    x = x + b
    m_c = x.mean(dim=1, keepdim=True)  # (N, 1, H, W)
    x = (x - m_c) * s + m_c
    m = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    return (x - m) * c + m


def translate(x: Tensor, shift_h: Tensor | int, shift_w: Tensor | int) -> Tensor:
    """Integer translation with zero fill: ``out[n, :, i, j] = x[n, :, i + shift_h[n], j + shift_w[n]]``.

    ``x: (N, C, H, W)``; shifts ``(B,)`` integers, B ∈ {1, N}. Positive shifts move the content up
    / left (the authors' convention); out-of-range source pixels give 0.
    """
    n, c, h, w = x.shape
    sh = _per_image(shift_h, n, x, "shift_h", torch.long)
    sw = _per_image(shift_w, n, x, "shift_w", torch.long)
    rows = torch.arange(h, device=x.device)[None, :] + sh[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + sw[:, None]  # (B, W)
    row_ok = (rows >= 0) & (rows < h)  # (B, H)
    col_ok = (cols >= 0) & (cols < w)  # (B, W)
    valid = row_ok[:, :, None] & col_ok[:, None, :]  # (B, H, W)
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (B, H, W)
    index = index.reshape(-1, 1, h * w).expand(n, c, h * w)  # (N, C, H·W)
    out = x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)
    return torch.where(valid[:, None], out, torch.zeros((), dtype=x.dtype, device=x.device))


def cutout(x: Tensor, centre_h: Tensor | int, centre_w: Tensor | int, size: tuple[int, int]) -> Tensor:
    """Zero the square rows ``[centre_h − size_h//2, … + size_h)`` × cols likewise, clipped at borders.

    ``x: (N, C, H, W)``; centres ``(B,)`` integers, B ∈ {1, N}; ``size = (size_h, size_w)``.
    """
    n, _, h, w = x.shape
    ch = _per_image(centre_h, n, x, "centre_h", torch.long)
    cw = _per_image(centre_w, n, x, "centre_w", torch.long)
    top = (ch - size[0] // 2)[:, None]  # (B, 1)
    left = (cw - size[1] // 2)[:, None]
    rows = torch.arange(h, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top) & (rows < top + size[0])  # (B, H)
    in_cols = (cols >= left) & (cols < left + size[1])  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return torch.where(mask[:, None], torch.zeros((), dtype=x.dtype, device=x.device), x)


def flip(x: Tensor, mask: Tensor | bool) -> Tensor:
    """Horizontal flip of the images where ``mask`` is True. ``mask: (B,)`` bool, B ∈ {1, N}."""
    m = _per_image(mask, x.shape[0], x, "mask", torch.bool).view(-1, 1, 1, 1)
    return torch.where(m, x.flip(3), x)


def _affine(x: Tensor, theta: Tensor, align_corners: bool) -> Tensor:
    """Bilinear ``grid_sample`` of ``x: (N, C, H, W)`` with ``theta: (B, 2, 3)``, zero padding."""
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=align_corners)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


def scale(x: Tensor, sx: Tensor | float, sy: Tensor | float, align_corners: bool = True) -> Tensor:
    """Affine scaling: output at normalised (u, v) samples x at (sx·u, sy·v); ``sx, sy: (B,)``.

    ``sx > 1`` shows more of the image (zoom out), ``sx < 1`` zooms in; ``sx = sy = 1`` is identity.
    """
    n = x.shape[0]
    sx_ = _per_image(sx, n, x, "sx")
    sy_ = _per_image(sy, n, x, "sy")
    sx_, sy_ = torch.broadcast_tensors(sx_, sy_)
    zero = torch.zeros_like(sx_)
    rows = [torch.stack([sx_, zero, zero], 1), torch.stack([zero, sy_, zero], 1)]  # 2 x (B, 3)
    theta = torch.stack(rows, 1)  # (B, 2, 3)
    return _affine(x, theta, align_corners)


def rotate(x: Tensor, angle: Tensor | float, align_corners: bool = True) -> Tensor:
    """Rotation by ``angle`` radians (``(B,)``), positive = anticlockwise, about the image centre.

    ``theta = [[cos, −sin, 0], [sin, cos, 0]]`` in normalised coordinates (as the authors).
    """
    a = _per_image(angle, x.shape[0], x, "angle")
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    rows = [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)]  # 2 x (B, 3)
    theta = torch.stack(rows, 1)  # (B, 2, 3)
    return _affine(x, theta, align_corners)
