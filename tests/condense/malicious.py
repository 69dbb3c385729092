"""Files whose pickle would create ``marker`` while it is read (for the tests that no loader runs code)."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import torch


class CreatesFile:
    """Unpickling this calls ``open(marker, "w")``, creating the file: the visible effect of running code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def torch_file(path: Path, marker: Path, record: dict | None = None) -> Path:
    """A ``torch.save`` zip file of ``record`` with the exploit under key ``"payload"``."""
    torch.save({**(record or {}), "payload": CreatesFile(marker)}, path)
    return path


def raw_pickle(path: Path, marker: Path, record: dict | None = None) -> Path:
    """A plain protocol-2 pickle (torch's legacy format) of ``record`` with the exploit."""
    path.write_bytes(pickle.dumps({**(record or {}), "payload": CreatesFile(marker)}, protocol=2))
    return path
