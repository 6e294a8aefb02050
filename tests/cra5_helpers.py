"""Builders of tiny official-architecture CRA5 (VAEformer) networks and the files upstream saves, shared by tests."""

from __future__ import annotations

import torch

from codec.models.vaeformer_official import TINY, VAEformerOfficial, official_state_dict


def coder_state(updated: bool) -> dict[str, torch.Tensor]:
    """CompressAI's coder buffers as upstream saves them: empty, or filled by ``update()``."""
    def tables(rows: int, length: int) -> dict[str, torch.Tensor]:
        if not updated:
            return {k: torch.zeros(0, dtype=torch.int32) for k in ("_offset", "_quantized_cdf", "_cdf_length")}
        return {
            "_offset": torch.zeros(rows, dtype=torch.int32),
            "_quantized_cdf": torch.zeros(rows, length, dtype=torch.int32),
            "_cdf_length": torch.full((rows,), length, dtype=torch.int32),
        }

    eb, gc = tables(TINY.hyper_channels, 12), tables(64, 30)
    state = {f"entropy_bottleneck.{k}": v for k, v in eb.items()} | {f"gaussian_conditional.{k}": v for k, v in gc.items()}
    state["gaussian_conditional.scale_table"] = torch.linspace(0.11, 256, 64) if updated else torch.zeros(0)
    return state


def official_file(model: VAEformerOfficial, updated: bool = False) -> dict[str, torch.Tensor]:
    """What upstream's ``cra5_268v_300k.pth`` holds, for ``model``."""
    sd = {f"backbone.{k}": v for k, v in (official_state_dict(model) | coder_state(updated)).items()}
    return sd | {"kl_loss.logvar": torch.zeros(())}


def tiny_model(seed: int = 0) -> VAEformerOfficial:
    """A tiny official-architecture network with non-trivial weights (LayerNorms, positions and medians too)."""
    torch.manual_seed(seed)
    model = VAEformerOfficial(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "entropy_bottleneck.quantiles":
                p.add_(torch.randn_like(p) * 0.3)
            else:
                p.copy_(torch.randn_like(p) * (0.5 if p.dim() < 2 else p[0].numel() ** -0.5))
    model.update()
    return model.eval()
