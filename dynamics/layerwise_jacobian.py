"""Per-example Jacobians from layer features and output signals (the NTK's LAYERWISE_GRADIENTS).

Purpose: the fastest per-example Jacobian on a CPU for :func:`dynamics.ntk.empirical_ntk`
(``NTKImplementation.LAYERWISE_GRADIENTS``; see "Empirical NTK" in ``docs/benchmarks.md``). One
batched forward taps every layer holding trainable parameters (its input ``a`` and output ``y``),
then one batched backward per logit ``o`` gives the signals ``δ = ∂f_o/∂y`` at the layer outputs
only. The examples of a batch are independent (:func:`dynamics.ntk.check_per_example`), so each
example's weight gradient is formed per layer from its own features and signals:

    Linear  y = W a + b    ∂f_o/∂W = Σ_l δ_l a_lᵀ,  ∂f_o/∂b = Σ_l δ_l   (l: positions sharing W)
    Conv2d                 the same over the L output positions, a_l = the unfolded input patch
                           (C_in·kh·kw), per group for grouped convolutions
    norms   y = γ x̂ + β    ∂f_o/∂γ = Σ δ x̂,  ∂f_o/∂β = Σ δ               (x̂: normalised input)

Shapes: features ``(n, L, in)`` (Linear), ``(n, L, C_in·kh·kw)`` (Conv2d) or the input's shape
(norms); signals ``δ`` the layer output's shape; the result is one ``(O, n, P_k)`` block per
trainable parameter, ``O`` logits, ``P_k`` the parameter's size.

Supported: ``Linear``, ``Conv2d``, ``GroupNorm``, ``LayerNorm``, ``InstanceNorm`` and eval-mode
``BatchNorm`` holding all trainable parameters, each called once per forward; anything else
raises :class:`LayerwiseUnsupported` (a ``ValueError``). A parameter used outside its module's
forward (tied weights) is caught by ``verify``: the per-example gradients of logit 0 must add up
to the batch gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["LayerwiseUnsupported", "LAYERWISE_CHUNK", "layerwise_plan", "layerwise_jacobian"]


class LayerwiseUnsupported(ValueError):
    """The model cannot use LAYERWISE_GRADIENTS; the message says why."""


LAYERWISE_CHUNK = 16  # default examples per batched backward (see docs/benchmarks.md)
_NORMS = (nn.GroupNorm, nn.LayerNorm, _InstanceNorm, _BatchNorm)
_SUPPORTED = (nn.Linear, nn.Conv2d) + _NORMS


def layerwise_plan(
    model: nn.Module, trainable: list[tuple[str, Tensor]]
) -> list[tuple[nn.Module, dict[str, Tensor]]]:
    """[(module, {'weight'/'bias': trainable param})] or raise :class:`LayerwiseUnsupported`.

    ``trainable``: the model's ``(name, parameter)`` pairs with ``requires_grad``; every one must
    be owned by a supported module.
    """
    plan: list[tuple[nn.Module, dict[str, Tensor]]] = []
    seen: set[int] = set()
    for mname, module in model.named_modules(remove_duplicate=False):
        own = {k: p for k, p in module._parameters.items() if p is not None and p.requires_grad}
        if not own:
            continue
        label = mname or type(module).__name__
        if not isinstance(module, _SUPPORTED):
            raise LayerwiseUnsupported(
                f"layerwise_gradients does not support {type(module).__name__} ({label!r}) holding trainable parameters"
            )
        if set(own) - {"weight", "bias"}:
            raise LayerwiseUnsupported(f"unexpected parameter names {sorted(own)} in {label!r}")
        if any(id(p) in seen for p in own.values()):
            raise LayerwiseUnsupported(f"parameters of {label!r} are shared; use another implementation")
        seen.update(id(p) for p in own.values())
        plan.append((module, own))
    if len(seen) != len(trainable):
        raise LayerwiseUnsupported("some trainable parameters are not owned by a module")
    return plan


def _layer_features(module: nn.Module, a: Tensor) -> Tensor:
    """What the per-example weight gradient pairs with the output signal (see _write_layer_grads)."""
    if isinstance(module, nn.Linear):
        return a.reshape(a.shape[0], -1, a.shape[-1])  # (n, L, in)
    if isinstance(module, nn.Conv2d):
        # the conv's own padding (any mode, including 'same'), then patches: (n, L, C_in·kh·kw)
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        a = F.pad(a, module._reversed_padding_repeated_twice, mode=mode)
        patches = F.unfold(a, module.kernel_size, dilation=module.dilation, stride=module.stride)
        return patches.transpose(1, 2).contiguous()  # row-major (n, L, K): the faster bmm operand
    if isinstance(module, nn.GroupNorm):  # normalised input x̂, same shape as the input
        return F.group_norm(a, module.num_groups, eps=module.eps)
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(a, module.normalized_shape, eps=module.eps)
    if isinstance(module, _InstanceNorm):
        if module.training or not module.track_running_stats:
            return F.instance_norm(a, eps=module.eps)
        return F.instance_norm(a, module.running_mean, module.running_var, use_input_stats=False, eps=module.eps)
    if isinstance(module, _BatchNorm):  # eval mode only (check_per_example)
        return F.batch_norm(a, module.running_mean, module.running_var, training=False, eps=module.eps)
    raise AssertionError(type(module))  # pragma: no cover


def _write_layer_grads(module: nn.Module, feat: Tensor, delta: Tensor, out: dict[str, Tensor]) -> None:
    """Write per-example gradients into ``out[name]: (n, numel)`` given ``delta = ∂f_o/∂output``.

    Linear ``y = W a + b``: ∂f/∂W = Σ_l δ_l a_lᵀ. Conv: the same over the L output positions with
    unfolded input patches. Affine norms ``y = γ x̂ + β``: ∂f/∂γ = Σ δ x̂, ∂f/∂β = Σ δ.
    """
    n = delta.shape[0]
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        if isinstance(module, nn.Linear):
            d = delta.reshape(n, -1, delta.shape[-1]).transpose(1, 2)  # (n, out, L)
            g = 1
        else:
            g = module.groups
            d = delta.reshape(n, delta.shape[1], -1)  # (n, C_out, L)
        if "weight" in out:
            w = out["weight"]
            if g == 1:
                torch.bmm(d, feat, out=w.view(n, d.shape[1], feat.shape[2]))  # (n, C_out, C_in·kh·kw)
            else:
                dg = d.reshape(n, g, -1, d.shape[-1])  # (n, G, C_out/G, L)
                ug = feat.reshape(n, feat.shape[1], g, -1)  # (n, L, G, C_in/G·kh·kw)
                w.copy_(torch.einsum("ngol,nlgk->ngok", dg, ug).reshape(n, -1))
        if "bias" in out:
            torch.sum(d, -1, out=out["bias"])
        return
    if isinstance(module, nn.LayerNorm):
        lead = tuple(range(1, delta.dim() - len(module.normalized_shape)))  # dims summed over
    else:
        lead = tuple(range(2, delta.dim()))  # channel-wise affine: (n, C, *spatial)
    if "weight" in out:
        out["weight"].copy_(((delta * feat).sum(lead) if lead else delta * feat).reshape(n, -1))
    if "bias" in out:
        out["bias"].copy_((delta.sum(lead) if lead else delta).reshape(n, -1))


@torch.enable_grad()
def layerwise_jacobian(
    model: nn.Module,
    x: Tensor,
    trainable: list[tuple[str, Tensor]],
    chunk_size: int | None,
    verify: bool = False,
) -> list[Tensor]:
    """Per-example Jacobian of ``model`` at ``x: (n, *input)``, ``chunk_size`` examples at a time.

    Returns one ``(O, n, P_k)`` block per parameter of ``trainable`` (in that order), ``O`` the
    number of logits. ``verify``: check on the first chunk that the per-example gradients of
    logit 0 add up to the batch gradient (:class:`LayerwiseUnsupported` otherwise).
    """
    plan = layerwise_plan(model, trainable)
    params = [p for _, p in trainable]
    n_all = x.shape[0]
    blocks: dict[int, Tensor] = {}
    clone = False  # clone the tapped outputs when the model modifies one in place
    chunk = chunk_size or LAYERWISE_CHUNK
    for sl in (slice(s, min(s + chunk, n_all)) for s in range(0, n_all, chunk)):
        while True:
            records: dict[int, tuple[Tensor, Tensor, int]] = {}

            def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
                if not inputs or not isinstance(inputs[0], Tensor) or not isinstance(output, Tensor):
                    raise LayerwiseUnsupported(f"{type(module).__name__} called without a positional tensor")
                if id(module) in records:
                    raise LayerwiseUnsupported(f"{type(module).__name__} is called more than once per forward")
                with torch.no_grad():  # features now, before any in-place op can change the input
                    feat = _layer_features(module, inputs[0].detach())
                records[id(module)] = (feat, output, output._version)
                return output.clone() if clone else None

            handles = [m.register_forward_hook(hook) for m, _ in plan]
            try:
                out = model(x[sl])
            finally:
                for h in handles:
                    h.remove()
            if clone or all(y._version == v for _, y, v in records.values()):
                break
            clone = True  # an output was modified in place: its gradient would be the wrong one
        out = out.reshape(out.shape[0], -1)  # (n, O)
        n_out = out.shape[1]
        if not blocks:
            blocks = {id(p): out.new_empty(n_out, n_all, p.numel()) for p in params}
        used = [(m, own, records[id(m)]) for m, own in plan if id(m) in records]
        for m, own in plan:
            if id(m) not in records:  # layer not on the path: zero Jacobian
                for p in own.values():
                    blocks[id(p)][:, sl].zero_()
        batch_grads = None
        if verify:
            batch_grads = torch.autograd.grad(out[:, 0].sum(), params, retain_graph=True, allow_unused=True)
        for o in range(n_out):
            deltas = torch.autograd.grad(
                out[:, o].sum(), [y for *_, (_, y, _) in used], retain_graph=o + 1 < n_out, allow_unused=True
            )
            for (module, own, (feat, _, _)), delta in zip(used, deltas):
                targets = {k: blocks[id(p)][o, sl] for k, p in own.items()}
                if delta is None:
                    for t in targets.values():
                        t.zero_()
                else:
                    _write_layer_grads(module, feat, delta, targets)
        if batch_grads is not None:
            _verify_layerwise(params, batch_grads, [blocks[id(p)][0, sl] for p in params])
            verify = False
    return [blocks[id(p)] for p in params]


def _verify_layerwise(params: list[Tensor], batch_grads: tuple, per_example: list[Tensor]) -> None:
    """Σ_n of the per-example gradients of logit 0 must equal the batch gradient (catches
    parameters used outside their module's forward, e.g. tied weights)."""
    errors, scale = [], 1e-12
    for p, g, pe in zip(params, batch_grads, per_example):
        ref = torch.zeros(p.numel(), dtype=pe.dtype, device=pe.device) if g is None else g.reshape(-1)
        errors.append((pe.sum(0) - ref).abs().max().item())
        scale = max(scale, ref.abs().max().item(), pe.abs().max().item())
    if max(errors) > 1e-4 * scale:
        raise LayerwiseUnsupported(
            "per-layer gradients do not add up to the batch gradient (a parameter used outside its "
            "module's forward?); use implementation='per_example_loop'"
        )
