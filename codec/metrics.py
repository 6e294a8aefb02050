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
