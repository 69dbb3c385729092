"""Compiled forward passes for the hot paths, with one eager fallback (``torch.compile``).

Most of the cost of condensation and evaluation is plain first-order work on a network:

- the real-gradient passes of matching, ``∇θ ℓ(B_c)`` (256 images per class, K steps),
- the training of θ on S between matching steps (T epochs),
- the evaluation protocol's training epochs and its test pass.

About a third of each such pass on a CPU is memory-bound element-wise work (pooling, instance
norm, ReLU; ``shared/PERF.md``) that the inductor compiler fuses. The synthetic side of matching
needs a double backward (``create_graph=True``), which a compiled graph does not support, so it
stays eager — on the same parameters, since the compiled function takes the network as an input.

One :class:`CompiledForward` computes ``network(images)`` through a compiled function of
``(network, images)``. Dynamo lifts the parameters and buffers to graph inputs, so every network
of the same architecture shares one graph (a fresh network each iteration costs no recompile).
The batch dimension is marked dynamic, so one graph serves every batch size of a pass (the real
batch and a smaller class, the synthetic set's batches, the test batch and its remainder):
measured on the 2-core CPU, one dynamic compile cost about as much as one static one and ran as
fast (docs/benchmarks.md), while static shapes would compile again for every batch size. Each
train/eval mode, grad mode and autocast state compiles once (cached on disk by inductor), and
each kind of pass has its own compiled function (:data:`PASSES`), so one kind never evicts
another from dynamo's cache.

The mathematics is the same; results equal eager up to float rounding (fused kernels sum in a
different order; tested in ``tests/condense/test_compiled.py``).

Modes (``compile`` in :class:`~condense.config.CondenseConfig` and
:class:`~condense.config.EvaluationConfig`, ``--compile`` on the command line):

- ``"off"``: eager;
- ``"on"``: compiled; a failure to compile is a :class:`CompileError`;
- ``"auto"`` (default): compiled where a compiler is available (a C++ compiler on a CPU, Triton on
  CUDA); if it is not, or the first compiled call fails (an unsupported layer, a broken
  toolchain), the pass runs eagerly and one warning is logged; the process remembers the failure
  and stays eager. The environment variable ``CONDENSE_COMPILE`` (``auto``/``on``/``off``)
  replaces ``auto`` — the test suite sets it to ``off`` so that only the tests that check
  compilation compile.

Example::

    >>> import torch
    >>> from condense.compiled import CompiledForward
    >>> from condense.networks import build_network
    >>> forward = CompiledForward("off", kind="train")
    >>> forward(build_network("convnet-w32", 1, 10, (8, 8)), torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from condense.config import COMPILE_MODES
from condense.errors import CondenseError, ConfigError

log = logging.getLogger("condense.compiled")

__all__ = ["CompileMode", "COMPILE_MODES", "CompileError", "CompiledForward", "compile_mode", "compiler_unavailable", "fallback_reason", "reset_fallback"]

CompileMode = Literal["auto", "on", "off"]
ENVIRONMENT_VARIABLE = "CONDENSE_COMPILE"
#: the kinds of pass, each with its own compiled function (and dynamo cache)
PASSES: tuple[str, ...] = ("real-gradient", "train", "test")  # keys of _PASS_FUNCTIONS
#: distinct (shape, mode) graphs dynamo keeps per pass before it gives up and runs eagerly
RECOMPILE_LIMIT = 32


class CompileError(CondenseError, RuntimeError):
    """``compile="on"`` and the pass could not be compiled."""


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {mode!r}; choose auto, on or off")
    return mode


def compile_mode(mode: str) -> str:
    """The effective mode: ``mode``, with ``auto`` replaced by ``$CONDENSE_COMPILE`` when that is set."""
    check_compile_mode(mode)
    override = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if mode == "auto" and override:
        if override not in COMPILE_MODES:
            raise ConfigError(f"{ENVIRONMENT_VARIABLE}={override!r}; choose auto, on or off")
        return override
    return mode


@functools.cache
def compiler_unavailable(device_type: str) -> str | None:
    """``None`` if inductor can compile for ``device_type``, else why not (one line)."""
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    if device_type != "cpu":
        return f"torch.compile is not set up for {device_type!r} devices here"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        compiler = get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable compiler
        return f"no C++ compiler ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler!r} not found)"
    return None


_fallback: str | None = None  # why this process stopped compiling (auto mode), once it has


def fallback_reason() -> str | None:
    """Why ``auto`` fell back to eager in this process, or ``None`` while it compiles."""
    return _fallback


def reset_fallback() -> None:
    """Forget a remembered fallback (tests; or after installing a compiler)."""
    global _fallback
    _fallback = None
    compiler_unavailable.cache_clear()


def _fall_back(reason: str) -> None:
    global _fallback
    if _fallback is None:
        _fallback = reason
        log.warning("torch.compile is not available here (%s); running eagerly (compile=auto)", reason)


# One function per kind of pass: dynamo keys its cache by code object, so each kind of pass keeps
# its own graphs (real batch, synthetic batches, test batches) and never evicts another's.
def _real_gradient_pass(network: nn.Module, images: Tensor) -> Tensor:
    return network(images)


def _train_pass(network: nn.Module, images: Tensor) -> Tensor:
    return network(images)


def _test_pass(network: nn.Module, images: Tensor) -> Tensor:
    return network(images)


_PASS_FUNCTIONS: dict[str, Callable[[nn.Module, Tensor], Tensor]] = {"real-gradient": _real_gradient_pass, "train": _train_pass, "test": _test_pass}


@functools.cache
def _compiled_pass(kind: str) -> Callable[[nn.Module, Tensor], Tensor]:
    """The compiled function of one kind of pass (static shapes except the batch dimension, which
    :meth:`CompiledForward.__call__` marks dynamic)."""
    import torch._dynamo.config as dynamo_config

    if dynamo_config.recompile_limit < RECOMPILE_LIMIT:
        dynamo_config.recompile_limit = RECOMPILE_LIMIT
    return torch.compile(_PASS_FUNCTIONS[kind], dynamic=False)


class CompiledForward:
    """``network(images)``, compiled per the mode; callable as ``forward(network, images)``.

    Args:
        mode: ``auto``, ``on`` or ``off`` (see the module docstring).
        kind: which pass this is (one of :data:`PASSES`); each kind compiles separately.
    """

    def __init__(self, mode: str = "auto", *, kind: str = "train") -> None:
        if kind not in PASSES:
            raise ValueError(f"unknown pass kind {kind!r}; choose one of {', '.join(PASSES)}")
        self.mode = compile_mode(mode)
        self.kind = kind

    def enabled(self, device_type: str) -> bool:
        """Whether a pass on ``device_type`` is compiled (for ``auto``: a compiler exists, no fallback yet)."""
        if self.mode == "off":
            return False
        if self.mode == "on":
            return True
        if _fallback is not None:
            return False
        reason = compiler_unavailable(device_type)
        if reason is not None:
            _fall_back(reason)
            return False
        return True

    def __call__(self, network: nn.Module, images: Tensor) -> Tensor:
        if not self.enabled(images.device.type):
            return network(images)
        if images.shape[0] > 1:
            from torch._dynamo import maybe_mark_dynamic

            maybe_mark_dynamic(images, 0)  # one graph for every batch size
        try:
            return _compiled_pass(self.kind)(network, images)
        except Exception as exc:  # noqa: BLE001 - decide below whether the compiler is to blame
            if self.mode == "on":
                raise CompileError(f"torch.compile failed for the {self.kind} pass of {type(network).__name__}: {_one_line(exc)}; use --compile off or auto") from exc
            result = network(images)  # raises if the input, not the compiler, is at fault
            _fall_back(f"{self.kind} pass of {type(network).__name__}: {_one_line(exc)}")
            return result

    def __repr__(self) -> str:
        return f"CompiledForward(mode={self.mode!r}, kind={self.kind!r})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
