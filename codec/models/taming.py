"""Load official taming-transformers VQGAN checkpoints (``.ckpt``) safely, and convert them to ours.

The official files (e.g. ``vqgan_imagenet_f16_16384/ckpts/last.ckpt``) are PyTorch-Lightning
checkpoints: a pickle whose ``state_dict`` holds the autoencoder (``encoder.*``, ``decoder.*``,
``quantize.embedding.weight``, ``quant_conv.*``, ``post_quant_conv.*``) and the training loss
(``loss.discriminator.*`` PatchGAN, ``loss.perceptual_loss.*`` LPIPS/VGG).  We never unpickle them
unrestricted: ``torch.load(..., weights_only=True)`` only builds tensors and plain containers.
Lightning bookkeeping (callback objects, hyper-parameters, numpy scalars) that the restricted
loader refuses is replaced by inert placeholders -- but only for names under
:data:`INERT_PREFIXES`; any other global refuses the file with a one-line :class:`ModelError`.

The architecture is inferred from the tensor shapes, the LPIPS weights are dropped and the
discriminator is split off, so :func:`load_taming_checkpoint` needs no YAML config.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint import check_state_dict, count_submodules, load_weights, read_official_state_dict, save_weights, tensor_shape
from ..errors import ModelError
from .vqgan import VQGAN, DiscriminatorConfig, PatchDiscriminator, VQGANConfig

DISC_PREFIX = "loss.discriminator."
DROP_PREFIXES = ("loss.",)  # LPIPS (loss.perceptual_loss.*) and any other loss state
INERT_PREFIXES = (
    "pytorch_lightning.",
    "lightning.",
    "lightning_fabric.",
    "omegaconf.",
    "numpy.",
    "argparse.Namespace",
)
"""Globals of training bookkeeping that may appear next to ``state_dict``; they load as inert objects."""

NOMINAL_RESOLUTION = 256  # attention resolutions of an inferred config are relative to this side

_CONVERT_HINT = (
    "convert it where you trust it: python -c \"import torch; "
    "sd=torch.load('IN.ckpt', map_location='cpu', weights_only=False)['state_dict']; "
    "torch.save({'state_dict': sd}, 'OUT.ckpt')\""
)


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of an official ``.ckpt`` (its ``state_dict``) or of a ``.safetensors`` file, with metadata."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_weights(path)
    what = "a taming-transformers checkpoint"
    return read_official_state_dict(path, what, lambda obj: obj.get("state_dict", obj), "state_dict", INERT_PREFIXES, _CONVERT_HINT)[0], {}


def split_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``(autoencoder tensors, discriminator tensors without prefix or None)``; other ``loss.*`` keys are dropped."""
    vq, disc = {}, {}
    for key, value in sd.items():
        if key.startswith(DISC_PREFIX):
            disc[key[len(DISC_PREFIX) :]] = value
        elif not key.startswith(DROP_PREFIXES):
            vq[key] = value
    return vq, disc or None


def _shape(sd: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    return tensor_shape(sd, key, dims, "a taming-transformers VQGAN")


def infer_config(sd: dict[str, torch.Tensor]) -> VQGANConfig:
    """The :class:`VQGANConfig` whose parameter names and shapes are those of ``sd`` (autoencoder keys)."""
    ch, in_channels = _shape(sd, "encoder.conv_in.weight", 4)[:2]
    levels = count_submodules(sd, "encoder.down.")
    blocks = count_submodules(sd, "encoder.down.0.block.")
    if levels == 0 or blocks == 0:
        raise ModelError("checkpoint lacks encoder.down.*; not a taming-transformers VQGAN")
    ch_mult = []
    for level in range(levels):
        width = _shape(sd, f"encoder.down.{level}.block.0.conv1.weight", 4)[0]
        if width % ch:
            raise ModelError(f"encoder level {level} has {width} channels, not a multiple of ch={ch}")
        ch_mult.append(width // ch)
    z_channels = _shape(sd, "encoder.conv_out.weight", 4)[0]
    embed_dim, quant_in = _shape(sd, "quant_conv.weight", 4)[:2]
    if quant_in != z_channels:
        raise ModelError(f"quant_conv takes {quant_in} channels but the encoder gives {z_channels} (double_z is not supported)")
    n_embed = _shape(sd, "quantize.embedding.weight", 2)[0]
    out_channels = _shape(sd, "decoder.conv_out.weight", 4)[0]
    enc_attn = [lv for lv in range(levels) if any(k.startswith(f"encoder.down.{lv}.attn.") for k in sd)]
    dec_attn = [lv for lv in range(levels) if any(k.startswith(f"decoder.up.{lv}.attn.") for k in sd)]
    if enc_attn != dec_attn:
        raise ModelError(f"encoder attention at levels {enc_attn} but decoder at {dec_attn}; unsupported layout")
    try:
        return VQGANConfig(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=blocks,
            attn_resolutions=tuple(NOMINAL_RESOLUTION >> lv for lv in enc_attn),
            resolution=NOMINAL_RESOLUTION,
            in_channels=in_channels,
            out_channels=out_channels,
            z_channels=z_channels,
            embed_dim=embed_dim,
            n_embed=n_embed,
        )
    except ValueError as exc:
        raise ModelError(f"checkpoint architecture unsupported: {exc}") from None


def infer_discriminator_config(sd: dict[str, torch.Tensor]) -> DiscriminatorConfig:
    """The :class:`DiscriminatorConfig` of discriminator tensors (``loss.discriminator.`` prefix stripped)."""
    convs = sorted(int(k.split(".")[1]) for k, v in sd.items() if k.startswith("main.") and k.endswith(".weight") and v.dim() == 4)
    if len(convs) < 2:
        raise ModelError("discriminator tensors do not form a PatchGAN (main.*.weight convolutions missing)")
    ndf, in_channels = _shape(sd, "main.0.weight", 4)[:2]
    actnorm = any(k.endswith(".loc") for k in sd)
    return DiscriminatorConfig(in_channels=in_channels, ndf=ndf, n_layers=max(0, len(convs) - 2), actnorm=actnorm)


def load_taming_checkpoint(
    path: str | os.PathLike,
) -> tuple[VQGANConfig, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``(config, VQGAN state dict, discriminator state dict or None)`` of an official checkpoint.

    ``path`` is a taming-transformers ``.ckpt`` or a ``.safetensors`` file with the same key names
    (with or without ``loss.*`` keys; one written by :func:`convert` works too).  Every failure is a
    one-line :class:`ModelError`.
    """
    sd, _ = read_state_dict(path)
    vq, disc = split_state_dict(sd)
    config = infer_config(vq)
    with torch.device("meta"):
        check_state_dict(VQGAN(config).state_dict(), vq, f"checkpoint {path}")
    vq = {k: v.float() if v.is_floating_point() else v for k, v in vq.items()}
    if disc is not None:
        with torch.device("meta"):
            check_state_dict(PatchDiscriminator(infer_discriminator_config(disc)).state_dict(), disc, f"discriminator of {path}")
    return config, vq, disc


def load_taming_model(path: str | os.PathLike) -> VQGAN:
    """An official checkpoint as a ready :class:`VQGAN` in eval mode (the discriminator is ignored)."""
    config, sd, _ = load_taming_checkpoint(path)
    model = VQGAN(config)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def convert(ckpt_path: str | os.PathLike, out_path: str | os.PathLike, discriminator_path: str | os.PathLike | None = None) -> str:
    """Write an official checkpoint as our safetensors model file; returns its weights hash.

    Metadata: ``model`` = ``"vqgan-base"`` (a VQGAN without bitrate ladder: the input of
    ``codec train vqgan-ladder``), ``config`` = the inferred :class:`VQGANConfig` as JSON,
    ``source`` = the checkpoint's file name.  The discriminator, when present and
    ``discriminator_path`` is given, goes to a second file (``model`` = ``"vqgan-discriminator"``).
    """
    config, sd, disc = load_taming_checkpoint(ckpt_path)
    model = VQGAN(config)
    model.load_state_dict(sd, strict=True)
    source = Path(ckpt_path).name
    digest = save_weights(model, out_path, {"model": "vqgan-base", "config": config.to_dict(), "source": source})
    if discriminator_path is not None:
        if disc is None:
            raise ModelError(f"{ckpt_path} holds no discriminator (loss.discriminator.*)")
        dcfg = infer_discriminator_config(disc)
        net = PatchDiscriminator(dcfg)
        net.load_state_dict(disc, strict=True)
        save_weights(net, discriminator_path, {"model": "vqgan-discriminator", "config": dcfg.to_dict(), "source": source})
    return digest
