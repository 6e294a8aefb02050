"""``codec pack``: compress a folder, glob or file of images into an image pack, or append to one.

The pack format, its index and reader are in :mod:`codec.image.pack`; this module collects the source
files, encodes them and writes the entries.  A new pack is written to a temporary file and renamed into
place.  Appending truncates the index and footer, appends entries, and writes a new index and footer
last (after an fsync of the entries); a pack whose footer an interrupted append left torn is first
rebuilt from its entry headers (:func:`codec.image.pack.scan`), keeping every intact entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from glob import glob, has_magic
from pathlib import Path
from typing import BinaryIO

from .. import fileio
from ..errors import CorruptStreamError, InputError
from .pack import HEADER, Index, describe, read_index, scan

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm", ".pnm"})
"""Files packed from a folder or glob (case-insensitive); hidden files and folders are skipped."""

Progress = Callable[[int, int, str], None]


def collect(source: str | os.PathLike) -> list[tuple[str, Path]]:
    """(entry name, path) of the images to pack, sorted by name.

    ``source`` is a folder (searched recursively; names relative to it), a glob such as
    ``photos/**/*.jpg`` (names relative to the glob's folder part), or one image file.  Only files with
    an image suffix (:data:`IMAGE_SUFFIXES`) are taken from a folder or glob, and no hidden ones.
    """
    text = os.fspath(source)
    root = Path(text)
    if root.is_dir():
        paths = _walk(root)
    elif has_magic(text):
        root = _glob_root(text)
        paths = [Path(p) for p in glob(text, recursive=True) if Path(p).is_file()]
    elif root.is_file():
        return [(root.name, root)]
    else:
        raise InputError(f"no such file or folder: {text}")
    found = []
    for path in paths:
        rel = path.relative_to(root)
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in rel.parts):
            found.append((rel.as_posix(), path))
    return sorted(found)


def _walk(root: Path) -> list[Path]:
    """Every file under ``root``, not descending into hidden folders."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, n) for n in names]
    return found


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob: its leading components without wildcards."""
    parts = Path(pattern).parts
    return Path(*parts[: next(i for i, p in enumerate(parts) if has_magic(p))])


def pack(
    source: str | os.PathLike,
    output: str | os.PathLike,
    model: str | None = None,
    quality: int | None = None,
    bpp: float | None = None,
    weights: str | os.PathLike | None = None,
    append: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Compress the images of ``source`` (see :func:`collect`) into the pack ``output``; returns a summary.

    Without ``append`` the pack is written to a temporary file and renamed into place (an existing
    ``output`` needs ``force``).  With ``append`` images whose name the pack already holds are skipped
    and the others are added in place (a missing ``output`` is created first): rerunning the same command
    after an interruption resumes it.  ``model``, ``quality``, ``bpp`` and ``weights`` are as for
    :func:`codec.api.encode`; ``progress(done, total, name)`` is called after each image.
    """
    if append and force:
        raise InputError("give --append or --force, not both")
    out = Path(output)
    if out.is_dir():
        raise InputError(f"output is a directory: {out}")
    if not out.resolve().parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    if out.exists() and not (append or force):
        raise InputError(f"{out} exists (use --append to add new images, or --force to overwrite)")
    files = collect(source)
    if not files and not append:
        raise InputError(f"no image files in {os.fspath(source)} (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
    encode = _encoder(model, quality, bpp, weights)
    if not append:
        fileio.write_atomic_with(out, lambda tmp: _write_new(tmp, files, encode, progress))
        return {"output": str(out), "added": len(files), "skipped": 0, "dropped_bytes": 0, **_summary(out)}
    if not out.exists():
        fileio.write_atomic(out, HEADER + Index().tail())
    return {"output": str(out), **_append(out, files, encode, progress), **_summary(out)}


def _summary(path: Path) -> dict:
    info = describe(path)
    return {k: info[k] for k in ("entries", "bytes", "bpp")}


def _encoder(model: str | None, quality: int | None, bpp: float | None, weights: str | os.PathLike | None) -> Callable[[str, Path], bytes]:
    """A function (name, path) -> codec file, with per-image input errors naming the image."""
    from .. import api  # torch and the models load only now

    def encode(name: str, path: Path) -> bytes:
        try:
            return api.encode(path, model=model, quality=quality, weights=weights, bpp=bpp)
        except InputError as exc:
            raise InputError(f"cannot pack {name}: {exc}") from None

    return encode


def _write_new(tmp: Path, files: list[tuple[str, Path]], encode: Callable[[str, Path], bytes], progress: Progress | None) -> None:
    with open(tmp, "w+b") as f:
        f.write(HEADER)
        _add_entries(f, Index(), files, encode, progress)


def _append(out: Path, files: list[tuple[str, Path]], encode: Callable[[str, Path], bytes], progress: Progress | None) -> dict:
    """Add the images of ``files`` not yet in the pack ``out``, in place; a damaged index is rebuilt first."""
    with open(out, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            index, dropped = read_index(f, size, str(out)), 0
        except CorruptStreamError:
            index = scan(f, size, str(out))
            dropped = size - index.end
        have = set(index.names)
        todo = [(name, path) for name, path in files if name not in have]
        _add_entries(f, index, todo, encode, progress)
    return {"added": len(todo), "skipped": len(files) - len(todo), "dropped_bytes": dropped}


def _add_entries(f: BinaryIO, index: Index, files: list[tuple[str, Path]], encode: Callable[[str, Path], bytes], progress: Progress | None) -> None:
    """Write ``files`` as entries at ``index.end``, then the index and footer, whatever stops the loop."""
    f.seek(index.end)
    f.truncate()
    try:
        for done, (name, path) in enumerate(files, 1):
            data = encode(name, path)
            entry, model = index.prepare(name, data)
            f.write(entry.record(data))
            index.append(entry, model)  # only once written: a failed write leaves the index as it was
            if progress is not None:
                progress(done, len(files), name)
    finally:  # entries first, durable, then the index: a crash in between leaves no footer, never a wrong one
        f.flush()
        os.fsync(f.fileno())
        f.seek(index.end)
        f.truncate()
        f.write(index.tail())
        f.flush()
        os.fsync(f.fileno())
