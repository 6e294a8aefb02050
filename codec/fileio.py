"""Atomic file output: a temporary file in the target folder, then a rename, with umask permissions."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable

from .errors import InputError


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a one-line error if it is missing or a directory."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file: {p}")
    if p.is_dir():
        raise InputError(f"is a directory: {p}")
    return p


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Let ``writer`` fill a temporary path next to ``path``, then rename it into place.

    On any failure the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    tmp = path.resolve().parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        writer(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_atomic_with(path, lambda tmp: tmp.write_bytes(data))
