"""Device choice, seeded randomness and logging.

Randomness: every run has one integer seed; each unit of work (an iteration, an evaluation
network) derives its own ``torch.Generator`` from ``(seed, *keys)`` with :func:`derive_generator`.
A unit's randomness therefore does not depend on what ran before it, which is what makes a
resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
from collections.abc import Callable, Iterator

import torch

log = logging.getLogger("condense")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``'auto'``: CUDA if available, else CPU; otherwise the named device, checked.

    Raises:
        ConfigError: a device name torch does not know, or a device this machine does not have
            (``cuda`` without CUDA, ``cuda:3`` with two GPUs, ``mps`` off Apple silicon).
    """
    from condense.errors import ConfigError

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r}: this package runs on cpu, cuda or mps")
    return resolved


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``keys`` (stable across runs and machines)."""
    text = ":".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def derive_generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator) -> Iterator[None]:
    """Seed torch's global RNG from ``generator`` inside the block, restoring it afterwards.

    Used for ``nn.Module`` construction, whose initialisers draw from the global RNG.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        yield


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def run_command(
    command: Callable[[], int], *, verbose: bool = False, threads: int | None = None, device: str | None = None, interrupted: str = "",
) -> int:
    """Run a command-line entry point: logging, torch threads, and one-line user errors.

    ``threads`` (>= 1) and ``device`` are checked before the command starts. A
    :class:`~condense.errors.CondenseError` prints ``error: <message>`` and returns 2 (never a
    traceback); so does an ``OSError`` (a file that cannot be written or read: permissions, a
    full disk), with the traceback only under ``--verbose``; Ctrl-C prints
    ``interrupted; <interrupted>`` and returns 130.
    """
    from condense.errors import ConfigError, CondenseError

    setup_logging(verbose)
    try:
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"--threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        if device is not None:
            resolve_device(device)
        return command()
    except CondenseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not the package: say which file and why, in one line
        log.debug("file error", exc_info=True)
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or type(exc).__name__}{where}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return 130
