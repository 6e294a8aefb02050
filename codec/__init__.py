"""codec: learned compression for images (McQuic; VQGAN-cluster below 0.05 bpp) and climate data (VAEformer).

Python API::

    import codec
    data = codec.encode("photo.png", quality=3)   # bytes; also PIL images, arrays, tensors
    pixels = codec.decode(data)                   # uint8 numpy array [H, W, 3]
    codec.info(data)                              # {"model": "mcquic", "bpp": ..., ...}
    ds = codec.decode(codec.encode("era5.nc", max_abs_error=0.5))   # lazy xarray.Dataset (VAEformer)
    tiny = codec.encode("photo.png", model="vqgan", bpp=0.03)        # highest VQGAN-cluster level <= 0.03 bpp
"""

import warnings

# compressai calls the deprecated torch.jit.script at import time; that notice is not for our users.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from .api import decode, encode, info  # noqa: E402
from .errors import CodecError  # noqa: E402
from .registry import list_models, load as load_model  # noqa: E402

__all__ = ["encode", "decode", "info", "list_models", "load_model", "CodecError"]
__version__ = "0.1.0"
