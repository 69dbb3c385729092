"""Reading files back without running code: the one torch-file loader of the package.

A pickle can execute anything while it is read (an object's ``__reduce__`` names a function and
its arguments), and synthetic sets, checkpoints and kernel records are exactly the files
researchers pass to each other. So every torch file the package reads goes through
:func:`load_torch_file`, which uses ``torch.load(weights_only=True)``: tensors, numbers, strings,
lists, tuples and dicts load; any other object — a class, a function call — is refused before it
is built. Failures become one :class:`~condense.errors.CondenseError` line naming the file.
New synthetic sets are ``safetensors`` files (:mod:`condense.artifacts`), which hold no code at all.

Example::

    state = load_torch_file("runs/x/checkpoint.pt", "checkpoint")   # dict of tensors and plain data
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from condense.errors import CondenseError

__all__ = ["load_torch_file", "one_line", "UnsafeFileError"]


class UnsafeFileError(CondenseError):
    """A file holds pickled objects other than tensors and plain data; it is not loaded."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """The error's text on one line (whitespace collapsed, cut at ``limit`` characters)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refusal_detail(message: str) -> str:
    """The useful part of torch's multi-paragraph weights-only refusal (e.g. 'Unsupported global: GLOBAL builtins.open')."""
    _, _, rest = message.partition("WeightsUnpickler error:")
    for line in rest.splitlines():
        if line.strip():
            return line.strip().split(" was not an allowed global")[0].rstrip(".")[:120]
    return "objects other than tensors and plain data"


def load_torch_file(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors.

    Args:
        path: a file written by ``torch.save`` (zip or legacy format).
        what: what the file should be ("synthetic set", "checkpoint", ...), for messages.

    Raises:
        CondenseError: the file is missing or unreadable (truncated, not a torch file).
        UnsafeFileError: the file holds pickled objects other than tensors and plain data (it
            might run code); nothing in it was built.
    """
    path = Path(path)
    if not path.is_file():
        raise CondenseError(f"no {what} at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the error says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message:
            raise UnsafeFileError(
                f"refusing to load {what} {path}: it holds pickled objects other than tensors and plain data "
                f"({_refusal_detail(message)}), which could run code"
            ) from None
        raise CondenseError(f"cannot read {what} {path}: {one_line(exc)} (not a torch file?)") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged or foreign file
        raise CondenseError(f"cannot read {what} {path}: {type(exc).__name__}: {one_line(exc)} (truncated or not a torch file?)") from None
