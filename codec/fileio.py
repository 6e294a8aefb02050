"""Files on disk: input checks with one-line errors, and atomic output (a temporary file in the target
folder, then a rename, with umask permissions)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import InputError

T = TypeVar("T")


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a one-line error if it is missing or a directory."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file: {p}")
    if p.is_dir():
        raise InputError(f"is a directory: {p}")
    return p


def _read(path: str | os.PathLike, how: Callable[[Path], T]) -> T:
    """``how(path)`` on an existing input file, its ``OSError`` turned into a one-line error."""
    p = existing_file(path)
    try:
        return how(p)
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None


def read_input(path: str | os.PathLike) -> bytes:
    """The bytes of an input file, with one-line errors for missing, directory or unreadable paths."""
    return _read(path, Path.read_bytes)


def map_input(path: str | os.PathLike) -> mmap.mmap | bytes:
    """A read-only memory map of an input file (its pages are read when touched and may be dropped again),
    ``b""`` for an empty file; one-line errors as :func:`read_input`."""

    def mapped(p: Path) -> mmap.mmap | bytes:
        with open(p, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if p.stat().st_size else b""

    return _read(path, mapped)


def read_head(path: str | os.PathLike, size: int) -> bytes:
    """The first ``size`` bytes of an input file (fewer if it is shorter); one-line errors as :func:`read_input`."""

    def head(p: Path) -> bytes:
        with open(p, "rb") as f:
            return f.read(size)

    return _read(path, head)


def check_output(source: str | os.PathLike, target: str | os.PathLike, force: bool) -> None:
    """Refuse to overwrite the input, or an existing file unless ``force``; the folder must exist."""
    src, dst = Path(source), Path(target)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise InputError("output would overwrite the input")
    if dst.is_dir():
        raise InputError(f"output is a directory: {dst}")
    if dst.exists() and not force:
        raise InputError(f"{dst} exists (use --force to overwrite)")
    if not dst.resolve().parent.is_dir():
        raise InputError(f"output folder does not exist: {dst.parent}")


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
