"""Three of the empirical NTK's implementations: what :func:`dynamics.ntk.empirical_ntk` runs per tile.

Purpose: keep the arithmetic of each :class:`~dynamics.ntk.NTKImplementation` apart from the
public entry point, which validates its arguments, picks an implementation and assembles the
kernel tile by tile (:mod:`dynamics.ntk`). Every function here sees one tile of examples, and
each is tested against an explicit autograd Jacobian through ``empirical_ntk``
(``tests/dynamics/test_ntk.py``). The fourth implementation, LAYERWISE_GRADIENTS (the CPU
default), has its own module, :mod:`dynamics.layerwise_jacobian`.

Jacobian-based implementations return a list of ``(O, n, P_k)`` blocks, one per trainable
parameter ``k`` (of ``P_k`` elements, any strides), for ``n`` examples and ``O`` logits;
:mod:`dynamics.ntk` contracts two such lists into a kernel block:

- :func:`jacobian_vmap` — JACOBIAN_CONTRACTION: ``vmap(jacrev)`` through ``functional_call``.
- :func:`jacobian_loop` — PER_EXAMPLE_LOOP: one forward per example, one ``autograd.grad`` per logit.

:func:`ntk_vector_products_block` — NTK_VECTOR_PRODUCTS — returns the kernel block itself, as
jvp-of-vjp, never forming the Jacobian of its second argument.

All of them evaluate the model as it is: the caller has checked that its examples are
independent (:func:`dynamics.ntk.check_per_example`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

__all__ = ["trainable_parameters", "jacobian_vmap", "jacobian_loop", "ntk_vector_products_block"]


def trainable_parameters(model: nn.Module) -> list[tuple[str, Tensor]]:
    """``(name, parameter)`` of every parameter with ``requires_grad``; ``ValueError`` if there is none."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True); the NTK is zero")
    return params


def _functional(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(trainable params, constants = frozen params and buffers), detached, for functional_call."""
    trainable = {n: p.detach() for n, p in trainable_parameters(model)}
    constants = {n: p.detach() for n, p in model.named_parameters() if n not in trainable}
    constants.update(dict(model.named_buffers()))
    return trainable, constants


# --------------------------------------------------------------------------------------------
# JACOBIAN_CONTRACTION


def jacobian_vmap(model: nn.Module, x: Tensor, chunk_size: int | None) -> list[Tensor]:
    """Per-example Jacobian of ``x: (n, *input)`` by ``vmap(jacrev)``: ``(O, n, P_k)`` per parameter.

    ``chunk_size`` examples per vmap call (``None``: all ``n`` at once).
    """
    params, constants = _functional(model)

    def f(p: dict[str, Tensor], xn: Tensor) -> Tensor:  # one example -> (O,)
        return functional_call(model, (p, constants), (xn.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), (None, 0), chunk_size=chunk_size)(params, x)  # name -> (n, O, *shape)
    n = x.shape[0]
    return [jac[k].reshape(n, jac[k].shape[1], -1).transpose(0, 1) for k in params]


# --------------------------------------------------------------------------------------------
# PER_EXAMPLE_LOOP


@torch.enable_grad()
def jacobian_loop(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Per-example Jacobian of ``x: (n, *input)``, one forward per example and one
    ``autograd.grad`` per logit: ``(O, n, P_k)`` per parameter (zero where a logit does not
    depend on a parameter)."""
    params = [p for _, p in trainable_parameters(model)]
    blocks: list[Tensor] = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)  # (O,)
        if not blocks:
            blocks = [out.new_zeros(out.numel(), x.shape[0], p.numel()) for p in params]
        for o in range(out.numel()):
            grads = torch.autograd.grad(out[o], params, retain_graph=o + 1 < out.numel(), allow_unused=True)
            for block, g in zip(blocks, grads):
                if g is not None:
                    block[o, i] = g.reshape(-1)
    return blocks


# --------------------------------------------------------------------------------------------
# NTK_VECTOR_PRODUCTS


def ntk_vector_products_block(model: nn.Module, x1: Tensor, x2: Tensor, mode: str, chunk_size: int | None) -> Tensor:
    """K(x1, x2) as jvp-of-vjp, never forming the Jacobian of x2.

    Args:
        x1: ``(N1, *input)``; ``chunk_size`` of its examples per vmap call (``None``: all).
        x2: ``(N2, *input)``, evaluated as one batch.
        mode: ``'full'`` → ``(N1, N2, O, O)``; ``'trace'`` → ``(N1, N2)``; ``'diagonal'`` →
            ``(N1, N2, O)`` (see :mod:`dynamics.ntk`).
    """
    params, constants = _functional(model)

    def f1(p: dict[str, Tensor], xn: Tensor) -> Tensor:  # one example -> (O,)
        return functional_call(model, (p, constants), (xn.unsqueeze(0),)).reshape(-1)

    def f2(p: dict[str, Tensor]) -> Tensor:
        # the whole x2 batch in one call: examples are independent (check_per_example)
        return functional_call(model, (p, constants), (x2,)).reshape(x2.shape[0], -1)  # (N2, O)

    def row(x1n: Tensor) -> Tensor:
        out, vjp_fn = vjp(lambda p: f1(p, x1n), params)  # out: (O,)

        def column(vec: Tensor) -> Tensor:
            (g,) = vjp_fn(vec)  # vecᵀ J(x1_n): one parameter-shaped tangent
            _, t = jvp(f2, (params,), (g,))  # J(x2) g: (N2, O)
            return t

        basis = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
        return vmap(column)(basis)  # (O, N2, O) indexed [o, m, p]

    res = vmap(row, chunk_size=chunk_size)(x1)  # (N1, O, N2, O)
    k = res.permute(0, 2, 1, 3)  # (N1, N2, O, O) = K[n, m, o, p]
    if mode == "full":
        return k.contiguous()
    diag = torch.diagonal(k, dim1=2, dim2=3)  # (N1, N2, O)
    return diag.sum(-1) if mode == "trace" else diag.contiguous()
