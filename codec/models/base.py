"""The contract every codec model implements, modelled on CompressAI's ``CompressionModel``.

``forward`` is the training path (reconstruction and what the loss needs); ``compress`` turns one
input into byte strings and ``decompress`` turns them back; ``update`` freezes the integer coding
tables from the learned statistics and ``check`` validates them after loading (the registry runs it
on every load).  The file layers (:mod:`codec.image.coding`, :mod:`codec.climate.coding`) talk to
models through this contract only, and the model layer imports nothing from them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn


def require_one_rate(level: int | None, what: str) -> None:
    """``ValueError`` unless ``level`` is None or 1: ``what`` (a model with one rate) has no other levels."""
    if level not in (None, 1):
        raise ValueError(f"{what} have one rate; got level {level}")


class CodecModel(nn.Module):
    """Base of every codec model: its media ``kind`` and the table life cycle (``update``, ``check``)."""

    kind: ClassVar[str]
    """``"image"`` or ``"climate"``: which file layer codes with it."""

    def update(self) -> None:
        """Freeze the learned statistics into the integer tables the coder uses (nothing to freeze by default)."""

    def check(self) -> None:
        """Raise ``ValueError`` unless the tables are valid for coding (nothing to check by default)."""


class ClimateCodecModel(CodecModel):
    """A climate model: normalized fields [1, C, H, W] <-> byte strings.

    Models with several qualities in one weights file take the 1-based ``level``; models with one rate
    take ``level=None``.
    """

    kind = "climate"

    @property
    def levels(self) -> int:
        """Number of quality levels (1 for a model with one rate)."""
        return 1

    def compress(self, x: Tensor, level: int | None = None) -> list[bytes]:
        """Byte strings of normalized fields [1, C, H, W] at ``level``."""
        raise NotImplementedError

    def decompress(self, strings: list[bytes], size: tuple[int, int], level: int | None = None) -> Tensor:
        """Inverse of :meth:`compress`: the fields [1, C, H, W] with (H, W) = ``size``."""
        raise NotImplementedError


class ImageCodecModel(CodecModel):
    """An image model: one image [1, 3, H, W] in [0, 1] <-> ``stream_count`` byte strings.

    Models with a bitrate ladder hold ``levels`` quality levels in one weights file and take the
    1-based ``level`` in ``compress``/``decompress``; models with one rate take ``level=None``.
    """

    kind = "image"
    max_pixels: ClassVar[int | None] = None
    """Largest image (pixels) the model codes, or None for no limit of its own (e.g. global attention)."""

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this before :meth:`compress` (1: the model pads itself)."""
        raise NotImplementedError

    @property
    def stream_count(self) -> int:
        """Number of byte strings per image."""
        raise NotImplementedError

    @property
    def levels(self) -> int:
        """Number of quality levels (1 for a model with one rate)."""
        return 1

    def level_meta(self, level: int) -> dict[str, int]:
        """What a file header records about ``level`` besides its number (nothing by default)."""
        return {}

    def features(self, x: Tensor) -> Any:
        """Encoder output of a padded image, reusable by :meth:`compress` across levels (None: not reusable)."""
        return None

    def compress(self, x: Tensor, level: int | None = None, features: Any = None) -> list[bytes]:
        """Byte strings of one padded image [1, 3, H, W] in [0, 1] at ``level``."""
        raise NotImplementedError

    def decompress(self, strings: list[bytes], height: int, width: int, level: int | None = None) -> Tensor:
        """Inverse of :meth:`compress`: the image [1, 3, height, width] in [0, 1]."""
        raise NotImplementedError
