"""Scale-out on ``torch.distributed``: one process per device (or per CPU core), launched by torchrun.

Everything rank-aware in the package goes through this module, so that the single-process path
never sees a collective: without torchrun (or with one process) :func:`current_world` is
``World(rank=0, size=1)``, :func:`my_share` is ``range(n)`` and every collective below returns
its input untouched.

What is split over the ranks:

- **classes** in condensation (:mod:`condense.class_parallel`): rank r owns the contiguous block
  ``my_share(C)`` of classes and computes only their real and synthetic gradients;
- **evaluation networks** of the protocol (:func:`condense.evaluation.evaluate_images`): rank r
  trains networks ``my_share(num_networks)``; :func:`gather_indexed` puts the accuracies back in
  index order on every rank;
- **units** of ``dynamics.track``, each run alone inside :func:`local_only`.

Rank 0 writes every file; decisions that depend on files (a checkpoint to resume, a finished
cell) are taken by rank 0 and broadcast (:func:`on_main`), so ranks never disagree even without a
shared file system. A collective that fails (a peer died) or waits longer than the timeout (a
peer hangs) raises :class:`~condense.errors.DistributedError` with one line that names the
operation, instead of hanging the job.

Launch::

    torchrun --standalone --nproc_per_node 2 -m condense run --preset quick-fashion-mnist-ipc1-dcc

Backends: gloo on CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``). The collective timeout is
``$CONDENSE_DIST_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from condense.errors import CondenseError, ConfigError, DistributedError

log = logging.getLogger("condense.distributed")

__all__ = [
    "DEFAULT_TIMEOUT_S", "World", "current_world", "launched_by_torchrun", "init_distributed", "shutdown",
    "distributed_session", "local_only", "my_share", "all_reduce_sum_", "differentiable_all_reduce_sum",
    "gather_indexed", "broadcast_from_main", "on_main", "main_first", "barrier", "slurm_array_shard",
]

T = TypeVar("T")

#: Seconds a collective may wait for its peers before the job stops with an error.
DEFAULT_TIMEOUT_S = 900.0
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` in ``0 … size − 1``."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files, logs and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


_SOLO = World()
_local_depth = 0  # > 0 inside local_only()
_timeout_s = DEFAULT_TIMEOUT_S


def current_world() -> World:
    """The job's world; ``World(0, 1)`` without a process group or inside :func:`local_only`."""
    if _local_depth or not dist.is_available() or not dist.is_initialized():
        return _SOLO
    return World(dist.get_rank(), dist.get_world_size())


def launched_by_torchrun() -> bool:
    """Whether the environment holds a torchrun (or Slurm-exported) rendezvous with more than one process."""
    return all(v in os.environ for v in _TORCHRUN_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


def _timeout_from_environment() -> float:
    text = os.environ.get("CONDENSE_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"CONDENSE_DIST_TIMEOUT must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"CONDENSE_DIST_TIMEOUT must be positive, got {text!r}")
    return value


def init_distributed(device: str | torch.device | None = None, timeout_s: float | None = None) -> World:
    """Join the process group described by torchrun's environment; ``World(0, 1)`` when there is none.

    gloo on CPU, NCCL when ``device`` is (or defaults to) CUDA; on CUDA every rank uses
    ``cuda:$LOCAL_RANK``. ``timeout_s`` (default ``$CONDENSE_DIST_TIMEOUT`` or
    :data:`DEFAULT_TIMEOUT_S`) bounds every collective. Ranks other than 0 log warnings only.
    """
    global _timeout_s
    if dist.is_available() and dist.is_initialized():
        return current_world()
    if not launched_by_torchrun():
        return _SOLO
    _timeout_s = float(timeout_s) if timeout_s is not None else _timeout_from_environment()
    kind = torch.device(device).type if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if kind == "cuda" and dist.is_nccl_available() else "gloo"
    if kind == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # torch.distributed.nn.functional binds ``group.WORLD`` as a default argument when it is first
    # imported (torch._dynamo imports it, and torch.optim imports dynamo). Imported after the group
    # exists, it would keep the group alive past shutdown(), so its worker threads would never be
    # joined (see shutdown). Import it while there is no group.
    importlib.import_module("torch.distributed.nn.functional")

    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=_timeout_s))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"could not join the process group ({backend}, {os.environ['WORLD_SIZE']} ranks): {_first_line(exc)}") from None
    world = current_world()
    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    log.info("joined a %s process group of %d ranks (collective timeout %.0f s)", backend, world.size, _timeout_s)
    return world


def shutdown() -> None:
    """Leave the process group (a no-op without one). Every process that joined must call it before exiting.

    Why it is not optional: gloo's worker threads drop their reference to a finished collective
    (and so to its tensors) a moment after ``wait()`` returns. If that happens while the
    interpreter is already finalizing, the thread needs the GIL to release the tensors' Python
    objects, Python ends the thread inside C++ code and the process aborts ("terminate called
    without an active exception", exit −6) after all its work is done. Measured with two gloo
    ranks that exit right after ``all_gather_object``: 5 aborts in 60 runs without this call, 0 in
    60 with it (docs/architecture.md). Destroying the group joins the worker threads first, provided
    nothing else holds the group (hence the early import in :func:`init_distributed`).
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(device: str | torch.device | None = None) -> Iterator[World]:
    """:func:`init_distributed` for the block, then :func:`shutdown`; ranks other than 0 print nothing on stdout."""
    world = init_distributed(device)
    stdout = sys.stdout
    try:
        if not world.is_main:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - closed below
        yield world
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        shutdown()


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Inside the block this rank works alone: :func:`current_world` is ``World(0, 1)``, no collectives.

    For work already split over the ranks at a coarser grain (one ``dynamics.track`` unit per rank).
    """
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def my_share(count: int, world: World | None = None) -> range:
    """The items ``0 … count − 1`` this rank owns: a contiguous block, sizes differing by at most one.

    Rank r owns ``[⌊count·r/N⌋, ⌊count·(r+1)/N⌋)``; without torchrun, ``range(count)``.
    """
    world = world or current_world()
    return range(count * world.rank // world.size, count * (world.rank + 1) // world.size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn a failed or timed-out collective into a one-line :class:`DistributedError`."""
    try:
        yield
    except CondenseError:
        raise
    except RuntimeError as exc:  # DistBackendError, gloo "Connection closed by peer", timeouts
        world = current_world()
        raise DistributedError(
            f"rank {world.rank} of {world.size}: {what} failed ({_first_line(exc)}); another rank died or did not answer "
            f"within {_timeout_s:.0f} s (CONDENSE_DIST_TIMEOUT); the last checkpoint is kept, rerun with --resume"
        ) from None


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors]) if len(tensors) > 1 else tensors[0].detach().reshape(-1).clone()


def _unflat(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, start = [], 0
    for t in like:
        out.append(flat[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


def all_reduce_sum_(tensors: Sequence[Tensor], what: str = "all-reduce") -> None:
    """In place: every tensor ← its sum over the ranks (one collective for the whole list; same dtype)."""
    world = current_world()
    if not world.is_distributed or not tensors:
        return
    flat = _flat(tensors)
    with _collective(what):
        dist.all_reduce(flat)
    with torch.no_grad():
        for t, reduced in zip(tensors, _unflat(flat, tensors)):
            t.copy_(reduced)


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_r x_r on every rank; backward ∂L/∂x_r = ∂L/∂y (identity, see below).

    Every rank evaluates the *same* loss L(y) on the same reduced y, so the gradient of that one
    loss with respect to this rank's summand is ∂L/∂y, which this rank already holds.
    ``torch.distributed.nn.functional.all_reduce`` all-reduces the output gradient again in its
    backward, which would give N·∂L/∂y here: right when each rank's loss is a different term of a
    global sum, a factor N too large for a loss every rank replicates.
    """

    @staticmethod
    def forward(ctx, *tensors: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        flat = _flat(tensors)
        with _collective("all-reduce of the gradients"):
            dist.all_reduce(flat)
        return tuple(t.clone() for t in _unflat(flat, tensors))

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return grads


def differentiable_all_reduce_sum(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Σ over ranks of each tensor, differentiable for a loss that every rank computes identically.

    ``tensors``: one list per rank with the same shapes (e.g. this rank's part of ∇θ ℓ(S), with a
    graph). Without torchrun the tensors are returned as they are.
    """
    if not current_world().is_distributed:
        return list(tensors)
    return list(_AllReduceSum.apply(*tensors))


def gather_indexed(local: dict[int, T], count: int, what: str = "gather of results") -> list[T]:
    """``[value of item 0, …, value of item count − 1]`` on every rank from each rank's ``{index: value}``.

    Values must be picklable (floats, small records); each index must be given by exactly one rank.
    """
    world = current_world()
    if world.is_distributed:
        parts: list[dict[int, T] | None] = [None] * world.size
        with _collective(what):
            dist.all_gather_object(parts, local)
        merged: dict[int, T] = {}
        for part in parts:
            merged.update(part or {})
    else:
        merged = local
    missing = [i for i in range(count) if i not in merged]
    if missing:
        raise RuntimeError(f"no rank produced items {missing}")
    return [merged[i] for i in range(count)]


def broadcast_from_main(value: T, what: str = "broadcast") -> T:
    """Rank 0's ``value`` on every rank (pickled between the job's own ranks)."""
    world = current_world()
    if not world.is_distributed:
        return value
    box = [value if world.is_main else None]
    with _collective(what):
        dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def on_main(function: Callable[[], T], what: str = "decision of rank 0") -> T:
    """Run ``function`` on rank 0 only and return its result on every rank.

    A :class:`~condense.errors.CondenseError` it raises is raised on every rank, so all ranks stop
    together with the same one-line message.
    """
    world = current_world()
    if not world.is_distributed:
        return function()
    outcome: tuple[bool, Any] = (True, None)
    if world.is_main:
        try:
            outcome = (True, function())
        except CondenseError as exc:
            outcome = (False, exc)
    ok, payload = broadcast_from_main(outcome, what)
    if not ok:
        raise payload
    return payload


def barrier(what: str = "barrier") -> None:
    if current_world().is_distributed:
        with _collective(what):
            dist.barrier()


@contextlib.contextmanager
def main_first(what: str = "wait for rank 0") -> Iterator[None]:
    """Rank 0 runs the block first (e.g. a download), the others after it finished."""
    world = current_world()
    if world.is_distributed and not world.is_main:
        barrier(what)
    yield
    if world.is_distributed and world.is_main:
        barrier(what)


def slurm_array_shard(environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``(index, count)`` of this task in a Slurm job array, or ``None`` outside one.

    From ``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_COUNT`` and ``SLURM_ARRAY_TASK_MIN`` (arrays
    may start anywhere: ``--array=1-4`` gives indices 0…3). Stepped or sparse arrays
    (``--array=0-8:2``, ``1,5,7``) are refused: their ids do not tile ``0 … count − 1``.
    """
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    try:
        task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        last = int(env.get("SLURM_ARRAY_TASK_MAX", str(first + count - 1)))
    except ValueError:
        raise ConfigError("SLURM_ARRAY_TASK_ID/COUNT/MIN/MAX are not integers; give --shard I/N") from None
    if count < 1 or last - first + 1 != count or not first <= task <= last:
        raise ConfigError(
            f"Slurm array task {task} of {count} (ids {first}..{last}) is not a contiguous array; use --array=0-{max(count, 1) - 1} or give --shard I/N"
        )
    return task - first, count
