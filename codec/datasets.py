"""PyTorch datasets over codec files: ``ImageArchive`` reads an image pack (``codec pack``).

::

    ds = codec.ImageArchive("images.cpk")          # transform=..., weights= (if not the shipped ones)
    x, name = ds[0]                                 # float32 [C, H, W] in [0, 1], and the entry's name
    loader = DataLoader(ds, batch_size=None, num_workers=4, shuffle=True)

Item ``i`` reads only entry ``i`` (one seek and one read, located by the pack's index) and decodes it
through :mod:`codec.image.coding`.  The dataset pickles without a file handle: each process (each
``DataLoader`` worker) opens the pack on its first item and loads each model once (the registry caches
models per process).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import Dataset

from . import container
from .errors import FormatError, ModelError
from .image import coding as image_coding
from .image import pack
from .image.packets import is_erasable


class ImageArchive(Dataset):
    """The images of a pack as ``(tensor, name)`` items: float32 ``[C, H, W]`` in [0, 1], C as stored (1-4).

    ``transform`` is applied to each tensor; ``weights`` is the weights file the pack was made with, if not
    the shipped checkpoints.  Missing, foreign or damaged packs fail here with one-line
    :class:`codec.errors.CodecError` subclasses; an entry that fails its checksum fails when it is read.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Callable[[torch.Tensor], Any] | None = None,
        weights: str | os.PathLike | None = None,
    ) -> None:
        if weights is not None and not os.path.isfile(weights):
            raise ModelError(f"weights file not found: {weights}")
        self.path, self.transform = os.fspath(path), transform
        self.weights = None if weights is None else os.fspath(weights)
        self._entries = pack.open_index(path).entries
        self._file: BinaryIO | None = None
        self._pid: int | None = None

    @property
    def names(self) -> list[str]:
        """Entry names (paths relative to the packed folder), in item order."""
        return [e.name for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> tuple[Any, str]:
        """Item ``index`` (negative counts from the end): the decoded image as a tensor, and its name."""
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} images")
        entry = self._entries[i]
        x = to_tensor(self.pixels(i))
        return (self.transform(x) if self.transform is not None else x), entry.name

    def pixels(self, index: int) -> np.ndarray:
        """The decoded uint8 pixels of item ``index``, as :func:`codec.decode` gives them ([H, W] or [H, W, C])."""
        entry = self._entries[index]
        c = container.unpack(pack.read_entry(self._handle(), entry, self.path), erasable=is_erasable)
        if c.kind != "image":
            raise FormatError(f"{self.path}: entry {entry.name!r} holds {c.kind} data, not an image")
        return image_coding.decode(c, self.weights)

    def close(self) -> None:
        """Close this process's file handle (the next item opens it again)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def _handle(self) -> BinaryIO:
        """This process's own handle on the pack, opened on first use (a forked worker opens its own)."""
        if self._pid != os.getpid():
            self._file, self._pid = open(self.path, "rb"), os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_file=None, _pid=None)
        return state


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels [H, W] or [H, W, C] as a float32 tensor [C, H, W] in [0, 1]."""
    planes = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return torch.from_numpy(np.ascontiguousarray(planes)).permute(2, 0, 1).float().div_(255.0)
