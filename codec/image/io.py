"""Turning user inputs (paths, PIL images, numpy arrays, torch tensors) into 8-bit pixel arrays and back.

Supported modes: ``L`` (grayscale), ``LA``, ``RGB``, ``RGBA``.  The colour part goes through the
learned codec as RGB; alpha is kept losslessly in a PNG stream of its own.  Image dimensions are
checked from the file header before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..fileio import existing_file

MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 26  # 67 Mpixel: the whole image is held in memory as activations
MODES_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_CONVERT = {"1": "L", "P": None, "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}


def check_size(height: int, width: int) -> None:
    """Refuse empty or absurdly large images before allocating anything for them."""
    if height < 1 or width < 1:
        raise InputError(f"empty image ({width}x{height})")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise InputError(f"image {width}x{height} exceeds the size limit ({MAX_SIDE} per side, {MAX_PIXELS} pixels)")


def _from_pil(im: Image.Image) -> np.ndarray:
    check_size(im.height, im.width)
    mode = im.mode
    if mode in _CONVERT:
        target = _CONVERT[mode] or ("RGBA" if "transparency" in im.info else "RGB")
        im = im.convert(target)
    elif mode not in MODES_BY_CHANNELS.values():
        raise InputError(f"unsupported pixel format {mode!r}: only 8-bit grayscale/RGB(A) images are supported")
    arr = np.asarray(im)
    return arr if arr.ndim == 3 else arr[:, :, None]


def _refuse_deep_samples(im: Image.Image, path: Path | str) -> None:
    """One-line error for files with more than 8 bits per sample (Pillow would silently cut 16-bit RGB to 8)."""
    raw = [t.args for t in getattr(im, "tile", ()) if isinstance(getattr(t, "args", None), str)]
    if im.mode.startswith("I;16") or im.mode in ("I", "F") or any(";16" in r or ";32" in r for r in raw):
        raise InputError(f"{path} has more than 8 bits per sample (16-bit or float): only 8-bit images are supported; convert it first")


def load_path(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 [H, W, C] (C in 1..4)."""
    path = existing_file(path)
    try:
        with Image.open(path) as im:
            check_size(im.height, im.width)
            _refuse_deep_samples(im, path)
            im.load()
            return _from_pil(im)
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image file Pillow can read") from None
    except Image.DecompressionBombError:
        raise InputError(f"image {path} exceeds the size limit ({MAX_SIDE} per side, {MAX_PIXELS} pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in MODES_BY_CHANNELS:
        raise InputError(f"image array must be [H, W] or [H, W, C] with C in 1..4, got shape {arr.shape}")
    check_size(arr.shape[0], arr.shape[1])
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise InputError("float image values must be finite and in [0, 1]")
        return np.round(arr * 255).astype(np.uint8)
    raise InputError(f"image dtype must be uint8 or float in [0, 1], got {arr.dtype}")


def to_array(image: object) -> np.ndarray:
    """Any supported image input as uint8 [H, W, C].  Tensors are [C, H, W] or [1, C, H, W]."""
    if isinstance(image, (str, os.PathLike)):
        return load_path(image)
    if isinstance(image, Image.Image):
        _refuse_deep_samples(image, "image")
        return _from_pil(image)
    torch = sys.modules.get("torch")  # an object can only be a tensor once torch is imported: no import here
    if torch is not None and isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in MODES_BY_CHANNELS:
            raise InputError(f"image tensor must be [C, H, W] or [1, C, H, W] with C in 1..4, got {tuple(image.shape)}")
        return _from_array(t.permute(1, 2, 0).numpy())
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise InputError(f"cannot compress an object of type {type(image).__name__}")


def split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB [H, W, 3] for the codec (gray replicated) and the alpha plane, if any."""
    channels = arr.shape[2]
    color = arr[:, :, : 1 if channels <= 2 else 3]
    alpha = arr[:, :, -1] if channels in (2, 4) else None
    rgb = np.repeat(color, 3, axis=2) if color.shape[2] == 1 else color
    return np.ascontiguousarray(rgb), alpha


def join_alpha(rgb: np.ndarray, mode: str, alpha: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_alpha` for the stored ``mode``: [H, W] for L, [H, W, C] otherwise."""
    if mode in ("L", "LA"):
        gray = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
        return gray if mode == "L" else np.stack([gray, alpha], axis=2)
    return rgb if mode == "RGB" else np.concatenate([rgb, alpha[:, :, None]], axis=2)


def png_bytes(plane: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 plane or image."""
    buf = io.BytesIO()
    Image.fromarray(plane).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def read_png_plane(data: bytes, height: int, width: int) -> np.ndarray:
    """Decode a PNG plane written by :func:`png_bytes` and check its size."""
    with Image.open(io.BytesIO(data)) as im:
        if im.size != (width, height) or im.mode != "L":
            raise InputError("alpha stream does not match the image")
        return np.asarray(im)


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format that ``path``'s suffix names, or a one-line error if Pillow cannot write it."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        known = ", ".join(s for s in (".png", ".webp", ".tif", ".jpg", ".bmp") if Image.registered_extensions().get(s) in Image.SAVE)
        raise InputError(f"cannot write images with suffix {suffix or '(none)'!r}: use one of {known}")
    return fmt


def encode_image_file(image: np.ndarray, path: str | os.PathLike) -> bytes:
    """The bytes of ``image`` saved in the format that ``path``'s suffix names (see :func:`output_format`)."""
    fmt = output_format(path)
    im = Image.fromarray(image)
    if fmt == "JPEG" and im.mode in ("RGBA", "LA"):
        raise InputError("JPEG cannot store alpha; decode to .png")
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot write {Path(path).suffix or 'image'} files: {exc}") from None
    return buf.getvalue()
