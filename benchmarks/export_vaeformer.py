"""Export a VAEformer training run as the shipped quality levels (one file per latent quantization step).

The shipped qualities share one set of trained weights and differ only in ``quant_step`` (a buffer, so
each level has its own weights hash).  Usage (from the repository root)::

    python benchmarks/export_vaeformer.py runs/vaeformer/model.safetensors --steps 2.0 1.0 0.5
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch

from codec import registry
from codec.checkpoint import load_weights, save_weights
from codec.models.vaeformer import VAEformer, VAEformerConfig


def export(weights: str, steps: list[float]) -> None:
    """Write ``codec/checkpoints/vaeformer-q<i>.safetensors`` for i = 1.. (coarsest step first)."""
    tensors, meta = load_weights(weights)
    config = VAEformerConfig.from_dict(json.loads(meta["config"]))
    kept = {k: json.loads(v) for k, v in meta.items() if k in ("train", "validation", "lambda", "step_range")}
    for quality, step in enumerate(sorted(steps, reverse=True), start=1):
        cfg = replace(config, quant_step=step)
        net = VAEformer(cfg)
        tensors["quant_step"] = torch.tensor(step, dtype=torch.float64)
        net.load_state_dict(tensors, strict=True)
        net.update()
        path = registry.checkpoint_path("vaeformer", quality)
        digest = save_weights(net, path, {"model": "vaeformer", "config": cfg.to_dict(), "quality": quality, "source": str(weights), **kept})
        print(f"{path} quant_step={step} hash={digest}")


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("--steps", type=float, nargs="+", default=[2.0, 1.0, 0.5])
    args = parser.parse_args()
    export(args.weights, args.steps)


if __name__ == "__main__":
    main()
