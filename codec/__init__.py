"""codec: learned compression for images (McQuic; VQGAN-cluster below 0.05 bpp), video (McQuic + a temporal prior) and climate data (VAEformer).

Python API::

    import codec
    data = codec.encode("photo.png", quality=3)   # bytes; also PIL images, arrays, tensors
    pixels = codec.decode(data)                   # uint8 numpy array [H, W, 3]
    codec.info(data)                              # {"model": "mcquic", "bpp": ..., ...}
    ds = codec.decode(codec.encode("era5.nc", max_abs_error=0.5))   # lazy xarray.Dataset (VAEformer)
    ds = codec.open_dataset("era5.cra")                             # the same, from a file
    tiny = codec.encode("photo.png", model="vqgan", bpp=0.03)        # highest VQGAN-cluster level <= 0.03 bpp
    images = codec.ImageArchive("images.cpk")     # a `codec pack` folder as a torch Dataset: (tensor [C, H, W], name)
    steps = codec.ClimateArchive("era5.cra")      # normalized time steps [C, H, W] as a torch Dataset
    frames = codec.decode(codec.encode("clip.mp4", gop=16))   # VideoFrames: iterate uint8 [H, W, 3] frames

``import codec`` is cheap: torch, compressai and the models load on the first call that needs them.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from .errors import CodecError

# compressai calls the deprecated torch.jit.script at import time; that notice is not for our users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

if TYPE_CHECKING:
    from .api import decode, encode, open_dataset
    from .batch import encode_many
    from .catalog import list_models
    from .climate.training_data import ClimateArchive
    from .datasets import ImageArchive
    from .describe import info
    from .registry import load as load_model

_LAZY = {
    "encode": ("api", "encode"),
    "decode": ("api", "decode"),
    "encode_many": ("batch", "encode_many"),
    "info": ("describe", "info"),
    "open_dataset": ("api", "open_dataset"),
    "list_models": ("catalog", "list_models"),
    "load_model": ("registry", "load"),
    "ClimateArchive": ("climate.training_data", "ClimateArchive"),
    "ImageArchive": ("datasets", "ImageArchive"),
}

__all__ = ["encode", "encode_many", "decode", "info", "open_dataset", "list_models", "load_model", "ClimateArchive", "ImageArchive", "CodecError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The public functions, imported from their modules on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'codec' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
