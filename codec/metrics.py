"""Image quality metrics on tensors in [0, 1]."""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim as _ms_ssim

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1], after rounding to 8 bits."""
    mse = torch.mean((a.mul(255).round() - b.mul(255).round()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """MS-SSIM of two batches [B, C, H, W] in [0, 1]; NaN when the image is too small for 5 scales."""
    if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    return float(_ms_ssim(a.mul(255).round(), b.mul(255).round(), data_range=255.0))


_SRGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def cielab(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB (D65) of sRGB images [..., 3, H, W] in [0, 1]."""
    x = rgb.double()
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,...jhw->...ihw", _SRGB_TO_XYZ, linear) / _D65_WHITE.view(3, 1, 1)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp(min=0) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)


def delta_e(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB) of two sRGB images [..., 3, H, W] in [0, 1]."""
    return float((cielab(a) - cielab(b)).square().sum(-3).sqrt().mean())


def channel_spread(rgb: torch.Tensor) -> float:
    """Mean per-pixel spread (max - min over R, G, B) of images [..., 3, H, W] in [0, 1], in 8-bit levels: 0 for grey."""
    return float((rgb.amax(-3) - rgb.amin(-3)).double().mean() * 255)
