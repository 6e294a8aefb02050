"""Training data: image folders held in memory as uint8, sampled as random crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted), or an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a directory: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images in {folder}")
    return files


def load_rgb(path: Path, min_side: int = 0) -> torch.Tensor:
    """An image file as a uint8 tensor [3, H, W]; images smaller than ``min_side`` are upscaled."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if min(im.size) < min_side:
            scale = min_side / min(im.size)
            im = im.resize((max(min_side, round(im.width * scale)), max(min_side, round(im.height * scale))), Image.BICUBIC)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()


class RandomCrops:
    """Random ``crop`` x ``crop`` patches (with horizontal flips) from images held in memory."""

    def __init__(self, folder: str | Path, crop: int, seed: int, limit: int | None = None) -> None:
        files = list_images(folder)[:limit]
        self.images = [load_rgb(p, min_side=crop) for p in files]
        self.crop = crop
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int) -> torch.Tensor:
        """A float batch [size, 3, crop, crop] in [0, 1]."""
        g, c = self.generator, self.crop
        out = torch.empty(size, 3, c, c, dtype=torch.uint8)
        for i in range(size):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
            y = int(torch.randint(img.shape[1] - c + 1, (1,), generator=g))
            x = int(torch.randint(img.shape[2] - c + 1, (1,), generator=g))
            patch = img[:, y : y + c, x : x + c]
            out[i] = patch.flip(-1) if bool(torch.randint(2, (1,), generator=g)) else patch
        return out.float().div_(255.0)
