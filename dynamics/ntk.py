"""Empirical neural tangent kernel (NTK) of any ``nn.Module`` classifier.

Purpose: measure how a network's function-space geometry moves during training (kernel velocity,
:mod:`dynamics.velocity`). The empirical NTK of a network ``f_θ`` at parameters ``θ`` is
(Jacot, Gabriel & Hongler, NeurIPS 2018; used to track training dynamics by Fort et al.,
NeurIPS 2020, "Deep learning versus kernel learning")::

    K(x1, x2)[n, m, o, p] = Σ_θ ∂f_o(x1_n)/∂θ · ∂f_p(x2_m)/∂θ        (sum over trainable params)
                          = (J1 J2ᵀ)[(n, o), (m, p)],   J: (N·O, P) per-example, per-logit Jacobian

with ``N1, N2`` examples, ``O`` logits and ``P`` trainable parameters. Three reductions over the
logit pair ``(o, p)`` are returned, always named by ``mode``:

    mode='full'      K                    (N1, N2, O, O)
    mode='trace'     Σ_o K[n, m, o, o]    (N1, N2)        (default; what Fort et al. track)
    mode='diagonal'  K[n, m, o, o]        (N1, N2, O)

Implementations (:class:`NTKImplementation`) differ in speed and memory, never in the result;
every one is tested against an explicit autograd Jacobian. The default (``AUTO``) picks the
fastest measured on the device: per-layer per-example gradients on a CPU (see "Empirical NTK"
in ``docs/benchmarks.md``; computed in :mod:`dynamics.layerwise_jacobian`), ``vmap(jacrev)``
Jacobian contraction elsewhere. This module validates, picks the implementation and assembles the
kernel tile by tile; the other three implementations' arithmetic is in
:mod:`dynamics.ntk_implementations`.

Memory. The Jacobian-based implementations hold two Jacobian tiles of
``tile · O · P · 4`` bytes (float32) at once, plus the output kernel
(``N1 · N2 · 4`` bytes for ``trace``; ``· O`` for ``diagonal``; ``· O²`` for ``full``). For the
default ConvNet (P ≈ 320k, O = 10) one 100-example tile is 100·10·320k·4 B ≈ 1.3 GB, so a
1000-image probe with ``tile_size=100`` needs ≈ 2.6 GB instead of the 13 GB of one untiled
Jacobian. Tiling costs recomputation: with ``T`` tiles per side, ``T + (T−1)(T−2)/2`` tile
Jacobians are evaluated for ``x2=None`` (46 instead of 10 for T = 10), and ``T1·T2 + 1`` for
``T1`` tiles of x1 and ``T2`` of x2 (snake order reuses one x2 tile between rows).

Batch statistics: in train mode BatchNorm normalises with the statistics of the batch, so one
example's logits depend on the others and the per-example NTK is undefined. Every implementation
refuses such a model with a ``ValueError`` instead of silently changing its mode.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from dynamics.ntk import empirical_ntk
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> x = torch.randn(5, 1, 4, 4)
    >>> empirical_ntk(net, x).shape                      # trace over logits, x2 = x1
    torch.Size([5, 5])
    >>> empirical_ntk(net, x, x[:2], mode="full").shape
    torch.Size([5, 2, 3, 3])
    >>> k1 = empirical_ntk(net, x, mode="diagonal", implementation="jacobian_contraction")
    >>> k2 = empirical_ntk(net, x, mode="diagonal", implementation="ntk_vector_products", tile_size=2)
    >>> bool(torch.allclose(k1, k2, rtol=1e-4, atol=1e-5))
    True
"""

from __future__ import annotations

import enum
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from dynamics.layerwise_jacobian import LayerwiseUnsupported, layerwise_jacobian, layerwise_plan
from dynamics.ntk_implementations import jacobian_loop, jacobian_vmap, ntk_vector_products_block, trainable_parameters

__all__ = ["NTKImplementation", "NTKMode", "empirical_ntk", "check_per_example", "MODES"]

NTKMode = Literal["full", "trace", "diagonal"]
MODES: tuple[str, ...] = ("full", "trace", "diagonal")


class NTKImplementation(str, enum.Enum):
    """How :func:`empirical_ntk` computes the kernel; each member says when it is fast.

    Members are strings too, so ``implementation="layerwise_gradients"`` works.
    """

    def __new__(cls, value: str, doc: str) -> NTKImplementation:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.__doc__ = doc
        return obj

    AUTO = (
        "auto",
        "The fastest measured on the device: LAYERWISE_GRADIENTS on a CPU when every trainable "
        "parameter lives in a supported layer (else PER_EXAMPLE_LOOP); JACOBIAN_CONTRACTION on "
        "GPUs and other accelerators (vmap's reported strength; not measured in this project).",
    )
    JACOBIAN_CONTRACTION = (
        "jacobian_contraction",
        "vmap(jacrev) per-example Jacobians through functional_call, contracted per parameter "
        "(the torch.func NTK tutorial's first method). Works for any module vmap supports; the "
        "usual choice on GPUs. On a CPU vmap over convolutions is slow: 2-2.5x the loop for "
        "the default ConvNet with one thread, with ~3x its memory.",
    )
    NTK_VECTOR_PRODUCTS = (
        "ntk_vector_products",
        "K = J1 J2ᵀ as jvp-of-vjp: per x1 example and logit one vjp, then one jvp over the x2 "
        "batch (the tutorial's second method); never materialises J2. Cost per pair of "
        "examples ∝ O × forward FLOPs, versus O·P (trace) or O²·P (full) for a Jacobian "
        "contraction: it can pay off for full kernels with many logits on nets whose forward "
        "costs about as many FLOPs as they have weights (MLPs). ConvNets reuse each weight at "
        "every pixel, so here it is the slowest by far (~50-100x the loop). Memory ∝ "
        "chunk_size·O·N2 activations: pass a small chunk_size. Needs forward-mode AD.",
    )
    LAYERWISE_GRADIENTS = (
        "layerwise_gradients",
        "One batched forward, then one batched backward per logit to the layer outputs only; "
        "per-example weight gradients are formed per layer (unfolded conv inputs × "
        "back-propagated signals; normalised activations × signals for norm layers). The CPU "
        "default: as fast as the loop with one thread, faster with two, and far more robust "
        "when other processes share the cores (few large ops). Supports Linear, Conv2d, "
        "GroupNorm, LayerNorm, InstanceNorm and eval-mode BatchNorm holding all trainable "
        "parameters, each called once per forward; anything else raises ValueError (and AUTO "
        "falls back to PER_EXAMPLE_LOOP). Checked once per call against the batch gradient.",
    )
    PER_EXAMPLE_LOOP = (
        "per_example_loop",
        "A Python loop: one forward per example and one autograd.grad per logit. General (any "
        "differentiable module); with one thread about as fast as LAYERWISE_GRADIENTS on a "
        "CPU, but its many small ops stall badly when threads compete for the cores.",
    )


# --------------------------------------------------------------------------------------------
# checks


def check_per_example(model: nn.Module) -> None:
    """Raise ``ValueError`` if ``model`` couples the examples of a batch (BatchNorm statistics)."""
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            if module.training:
                raise ValueError(
                    f"put the model in eval mode: in train mode BatchNorm couples the examples of "
                    f"a batch so the per-example NTK is undefined (module {name or type(module).__name__!r})"
                )
            if module.running_mean is None:
                raise ValueError(
                    f"BatchNorm module {name or type(module).__name__!r} has no running statistics "
                    f"(track_running_stats=False), so even in eval mode it normalises with batch "
                    f"statistics and the per-example NTK is undefined"
                )


# --------------------------------------------------------------------------------------------
# contraction of Jacobian tiles


def _contract(j1: list[Tensor], j2: list[Tensor], mode: str) -> Tensor:
    """Σ over parameter blocks of ``(O, n, P_k)`` × ``(O, m, P_k)`` reduced by ``mode``."""
    acc: Tensor | None = None
    for a, b in zip(j1, j2):
        n_out, n, m = a.shape[0], a.shape[1], b.shape[1]
        if mode == "full":
            # (O·n, P_k) @ (P_k, O·m) -> (O, n, O, m), indexed [o, n, p, m]
            k = (a.reshape(n_out * n, -1) @ b.reshape(n_out * m, -1).T).view(n_out, n, n_out, m)
        else:
            k = torch.bmm(a, b.transpose(1, 2))  # (O, n, m): K[n, m, o, o] for each o
        acc = k if acc is None else acc.add_(k)
    assert acc is not None
    if mode == "full":
        return acc.permute(1, 3, 0, 2)  # (n, m, O, O)
    if mode == "trace":
        return acc.sum(0)  # (n, m)
    return acc.permute(1, 2, 0)  # (n, m, O)


def _transpose_block(block: Tensor, mode: str) -> Tensor:
    """K(x2, x1) from K(x1, x2): swap examples (and the logit pair in ``full`` mode)."""
    if mode == "full":
        return block.permute(1, 0, 3, 2)
    if mode == "trace":
        return block.T
    return block.permute(1, 0, 2)


def _tiles(n: int, tile: int) -> list[slice]:
    return [slice(s, min(s + tile, n)) for s in range(0, n, tile)]


def _tiled_kernel(
    x1: Tensor,
    x2: Tensor,
    symmetric: bool,
    tile_size: int,
    mode: str,
    out_shape: tuple[int, ...],
    dtype: torch.dtype,
    block: Callable[[tuple[int, slice], tuple[int, slice]], Tensor],
) -> Tensor:
    """Fill the kernel tile by tile; ``block((side, slice), (side, slice))`` returns one block.

    Row tiles come from x1 (side 1) and column tiles from x2 (side 2, or side 1 when symmetric).
    Symmetric: only blocks j ≥ i are computed, in descending j so the Jacobian cache is reused;
    the rest are mirrored and the diagonal blocks averaged with their transpose, so that the kernel
    is exactly symmetric on every CPU and GPU.
    General: columns alternate direction between rows (snake order) for the same reason.
    """
    out = torch.empty(out_shape, dtype=dtype, device=x1.device)
    rows = _tiles(x1.shape[0], tile_size)
    cols = rows if symmetric else _tiles(x2.shape[0], tile_size)
    for i, ri in enumerate(rows):
        if symmetric:
            order = range(len(cols) - 1, i - 1, -1)
        else:
            order = range(len(cols)) if i % 2 == 0 else range(len(cols) - 1, -1, -1)
        for j in order:
            cj = cols[j]
            blk = block((1, ri), (1 if symmetric else 2, cj))
            if symmetric and j == i:  # J Jᵀ need not be bitwise symmetric (BLAS blocking differs by CPU)
                blk = 0.5 * (blk + _transpose_block(blk, mode))
            out[ri, cj] = blk
            if symmetric and j != i:
                out[cj, ri] = _transpose_block(blk, mode)
    return out


class _JacobianCache:
    """Keeps the two most recently used Jacobian tiles (evicting before computing a new one)."""

    def __init__(self, compute: Callable[[int, slice], list[Tensor]], capacity: int = 2) -> None:
        self.compute = compute
        self.capacity = capacity
        self.store: OrderedDict[tuple[int, int, int], list[Tensor]] = OrderedDict()
        self.evaluations = 0

    def __call__(self, side: int, sl: slice) -> list[Tensor]:
        key = (side, sl.start, sl.stop)
        if key in self.store:
            self.store.move_to_end(key)
            return self.store[key]
        while len(self.store) >= self.capacity:
            self.store.popitem(last=False)
        value = self.compute(side, sl)
        self.evaluations += 1
        self.store[key] = value
        return value


# --------------------------------------------------------------------------------------------
# public entry point


def _member(implementation: NTKImplementation | str) -> NTKImplementation:
    if isinstance(implementation, NTKImplementation):
        return implementation
    try:
        return NTKImplementation(str(implementation).lower())
    except ValueError:
        names = ", ".join(m.value for m in NTKImplementation)
        raise ValueError(f"unknown NTK implementation {implementation!r}; choose from {names}") from None


def _resolve(implementation: NTKImplementation | str, model: nn.Module, device: torch.device) -> NTKImplementation:
    """The member named by ``implementation``, with AUTO replaced by the device's fastest."""
    impl = _member(implementation)
    if impl is not NTKImplementation.AUTO:
        return impl
    if device.type != "cpu":
        return NTKImplementation.JACOBIAN_CONTRACTION
    try:
        layerwise_plan(model, trainable_parameters(model))
    except LayerwiseUnsupported:
        return NTKImplementation.PER_EXAMPLE_LOOP
    return NTKImplementation.LAYERWISE_GRADIENTS


def empirical_ntk(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    mode: NTKMode = "trace",
    implementation: NTKImplementation | str = NTKImplementation.AUTO,
    chunk_size: int | None = None,
    tile_size: int | None = None,
) -> Tensor:
    """Empirical NTK of ``model`` between ``x1`` and ``x2`` over all trainable parameters.

    Args:
        model: any classifier ``(N, *input) -> (N, O)`` (trailing output dims are flattened).
            Evaluated as it is: BatchNorm must be in eval mode (else ``ValueError``); dropout in
            train mode would make the kernel random, so call ``model.eval()`` first.
        x1: ``(N1, *input)`` inputs, e.g. ``(N, C, H, W) float32, normalised``.
        x2: ``(N2, *input)`` or ``None`` for ``x2 = x1`` (then only blocks on and above the
            diagonal are computed and the rest mirrored).
        mode: ``'full'`` → ``(N1, N2, O, O)``; ``'trace'`` → ``(N1, N2)`` = Σ_o K[n, m, o, o];
            ``'diagonal'`` → ``(N1, N2, O)`` = K[n, m, o, o].
        implementation: an :class:`NTKImplementation` or its value; ``'auto'`` picks the
            fastest on the device.
        chunk_size: examples per vmap call (JACOBIAN_CONTRACTION, NTK_VECTOR_PRODUCTS) or per
            batched forward/backward (LAYERWISE_GRADIENTS); bounds intermediate memory.
            ``None``: the whole tile at once, except LAYERWISE_GRADIENTS, which defaults to
            16 examples (as fast as larger chunks on the CPU, and less memory). Ignored by
            PER_EXAMPLE_LOOP.
        tile_size: examples per block of ``x1 × x2``. Jacobian-based implementations hold two
            tiles of ``tile_size · O · P · 4`` bytes (float32) at once. ``None``: no tiling.

    Returns:
        The kernel on ``x1``'s device, in the model's output dtype.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for name, value in (("chunk_size", chunk_size), ("tile_size", tile_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    symmetric = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must have the same example shape, got {tuple(x1.shape[1:])} and {tuple(x2.shape[1:])}")
    if x1.shape[0] == 0 or x2.shape[0] == 0:
        raise ValueError("x1 and x2 must hold at least one example each")
    check_per_example(model)
    trainable_parameters(model)
    impl = _resolve(implementation, model, x1.device)
    auto = _member(implementation) is NTKImplementation.AUTO

    with torch.no_grad():
        probe = model(x1[:1]).reshape(1, -1)
    n_out, dtype = probe.shape[1], probe.dtype
    n1, n2 = x1.shape[0], x2.shape[0]
    shape = {"full": (n1, n2, n_out, n_out), "trace": (n1, n2), "diagonal": (n1, n2, n_out)}[mode]
    tile = tile_size or max(n1, n2)
    xs = {1: x1, 2: x2}

    if impl is NTKImplementation.NTK_VECTOR_PRODUCTS:

        def block(a: tuple[int, slice], b: tuple[int, slice]) -> Tensor:
            return ntk_vector_products_block(model, xs[a[0]][a[1]], xs[b[0]][b[1]], mode, chunk_size)

        return _tiled_kernel(x1, x2, symmetric, tile, mode, shape, dtype, block)

    def jacobian(side: int, sl: slice, verify: bool = False) -> list[Tensor]:
        x = xs[side][sl]
        if impl is NTKImplementation.JACOBIAN_CONTRACTION:
            return jacobian_vmap(model, x, chunk_size)
        if impl is NTKImplementation.PER_EXAMPLE_LOOP:
            return jacobian_loop(model, x)
        return layerwise_jacobian(model, x, trainable_parameters(model), chunk_size, verify=verify)

    if impl is NTKImplementation.LAYERWISE_GRADIENTS:
        try:
            layerwise_plan(model, trainable_parameters(model))
        except LayerwiseUnsupported as err:
            raise ValueError(str(err)) from None
        # verify once, on two examples, that per-layer gradients add up to the batch gradient
        try:
            jacobian(1, slice(0, min(2, n1)), verify=True)
        except LayerwiseUnsupported as err:
            if not auto:
                raise ValueError(str(err)) from None
            warnings.warn(f"{err}; falling back to per_example_loop", RuntimeWarning, stacklevel=2)
            impl = NTKImplementation.PER_EXAMPLE_LOOP

    cache = _JacobianCache(jacobian)

    def jblock(a: tuple[int, slice], b: tuple[int, slice]) -> Tensor:
        ja = cache(*a)
        jb = ja if a == b else cache(*b)
        return _contract(ja, jb, mode)

    with torch.no_grad():
        return _tiled_kernel(x1, x2, symmetric, tile, mode, shape, dtype, jblock)
