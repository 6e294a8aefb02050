"""`codec train`: tiny configs run in seconds, resume exactly, are seeded, and produce loadable weights."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec.checkpoint import load_weights, read_metadata
from codec.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("training", 3), ("validation", 1)):
        (root / split).mkdir()
        for i in range(n):
            y, x = np.mgrid[0:96, 0:80]
            img = np.stack([(x * (i + 1)) % 256, (y * 3) % 256, rng.integers(0, 256, (96, 80))], 2).astype(np.uint8)
            Image.fromarray(img).save(root / split / f"{i}.png")
    return root


def train(out, data_dir, *extra):
    return main(["train", "mcquic", "--preset", "tiny", "--data", str(data_dir / "training"), "--out", str(out), "--no-progress", "--threads", "1", *map(str, extra)])


def test_tiny_training_runs_validates_and_exports(tmp_path, data_dir, capsys):
    assert train(tmp_path / "run", data_dir) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # validation split found next to training/; every level validated
    assert {f"{m}_q{q}" for m in ("bpp", "psnr", "ms_ssim") for q in (1, 2)} == set(result["validation"])
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["model"] == "mcquic" and json.loads(meta["train"])["steps_done"] == 4
    weights = tmp_path / "run" / "model.safetensors"
    img = np.full((40, 40, 3), 77, np.uint8)
    assert codec.decode(codec.encode(img, weights=weights), weights=weights).shape == (40, 40, 3)
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == [1, 2, 3, 4]


def test_resume_equals_uninterrupted_run(tmp_path, data_dir):
    assert train(tmp_path / "a", data_dir, "--steps", 6) == 0
    assert train(tmp_path / "b", data_dir, "--steps", 6) == 0
    assert train(tmp_path / "c", data_dir, "--steps", 6, "--stop-after", 3) == 0
    assert json.loads(read_metadata(tmp_path / "c" / "model.safetensors")["train"])["steps_done"] == 3
    assert train(tmp_path / "c", data_dir, "--steps", 6, "--resume") == 0
    hashes = [read_metadata(tmp_path / r / "model.safetensors")["weights_hash"] for r in "abc"]
    assert hashes[0] == hashes[1], "same seed must give the same weights"
    assert hashes[0] == hashes[2], "resuming must continue exactly"


def test_fine_tune_from_other_level_and_hyperprior_baseline(tmp_path, data_dir):
    assert train(tmp_path / "base", data_dir) == 0
    assert train(tmp_path / "ft", data_dir, "--init", tmp_path / "base" / "model.safetensors") == 0
    base, _ = load_weights(tmp_path / "base" / "model.safetensors")
    assert main(["train", "hyperprior", "--preset", "tiny", "--data", str(data_dir / "training"), "--out", str(tmp_path / "hp"), "--no-progress"]) == 0
    assert read_metadata(tmp_path / "hp" / "model.safetensors")["model"] == "compressai-mbt2018-mean"
    assert base


def test_config_file_overrides_preset_and_rejects_unknown_keys(tmp_path, data_dir, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"train": {"steps": 2, "crop": 64}, "model": {"groups": [4], "codewords": [8, 8, 4]}}))
    assert train(tmp_path / "run", data_dir, "--config", config) == 0
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert json.loads(meta["config"])["groups"] == [4] and json.loads(meta["config"])["codewords"] == [8, 8, 4]
    config.write_text(json.dumps({"model": {"groups": 4}}))
    capsys.readouterr()
    assert train(tmp_path / "run1", data_dir, "--config", config) == 1
    assert "invalid model setting: groups must be a list" in capsys.readouterr().err
    assert json.loads(meta["train"])["steps_done"] == 2
    config.write_text(json.dumps({"train": {"stepz": 2}}))
    capsys.readouterr()
    assert train(tmp_path / "run2", data_dir, "--config", config) == 1
    assert "unknown train setting(s): stepz" in capsys.readouterr().err
    config.write_text(json.dumps({"loss": {"pixel_weight": 1.0}}))  # a recovery setting: mcquic has none
    capsys.readouterr()
    assert train(tmp_path / "run3", data_dir, "--config", config) == 1
    assert "unknown loss setting 'pixel_weight' for mcquic" in capsys.readouterr().err
    config.write_text("{not json")
    assert train(tmp_path / "run4", data_dir, "--config", config) == 1


def test_train_errors(tmp_path, data_dir, capsys):
    assert main(["train", "mcquic", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--preset", "tiny"]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["train", "nope", "--data", str(data_dir / "training"), "--out", str(tmp_path / "o")]) == 1
    assert main(["train", "mcquic", "--data", str(data_dir / "training"), "--out", str(tmp_path / "o"), "--preset", "huge"]) == 1
    assert main(["train", "mcquic", "--data", str(data_dir / "training"), "--out", str(tmp_path / "o"), "--quality", "9"]) == 1


def test_torchrun_two_processes(tmp_path, data_dir):
    """DDP under torchrun (gloo on CPU): ranks train in lockstep, rank 0 alone writes the run folder."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "codec.cli",
           "train", "mcquic", "--preset", "tiny", "--data", str(data_dir / "training"), "--out", str(out), "--no-progress", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(read_metadata(out / "model.safetensors")["train"])["steps_done"] == 4
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines() if "loss" in line]
    assert logged == [1, 2, 3, 4]  # one writer, not two


def test_mcquic_init_keeps_levels_of_a_ladder_that_gained_one():
    """--init from a ladder with m = 2, 4 into one with m = 1, 2, 4: the codebooks follow their m, the new level is seeded fresh."""
    import dataclasses

    from codec.models.mcquic import TINY, McQuic
    from codec.training.mcquic import McQuicTask

    old = McQuic(TINY).state_dict()
    task = McQuicTask(dataclasses.replace(TINY, groups=(1, 2, 4)))
    adapted = task.adapt_init(old)
    assert not [k for k in adapted if k.startswith("quantizers.0.")]
    for old_level, new_level in ((0, 1), (1, 2)):
        for scale in range(TINY.scales):
            key = f"quantizers.{old_level}.{scale}.codebook"
            assert adapted[f"quantizers.{new_level}.{scale}.codebook"] is old[key]
    assert adapted["g_s.0.conv_a.0.conv.0.weight"] is old["g_s.0.conv_a.0.conv.0.weight"]
    model = task.build()
    model.load_state_dict(adapted, strict=False)  # every adapted tensor fits the new ladder
    assert torch.equal(model.quantizers[2][0].codebook, old["quantizers.1.0.codebook"])


def test_steps_0_exports_a_grown_ladder(tmp_path, data_dir, capsys):
    """--steps 0 --init: the old levels unchanged under their m, the new level seeded by k-means, validated; without --init it is refused."""
    assert train(tmp_path / "base", data_dir) == 0  # tiny ladder m = 2, 4
    config = tmp_path / "grow.json"
    config.write_text(json.dumps({"model": {"groups": [1, 2, 4]}}))
    capsys.readouterr()
    assert train(tmp_path / "grown", data_dir, "--config", config, "--init", tmp_path / "base" / "model.safetensors", "--steps", 0) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {f"psnr_q{q}" for q in (1, 2, 3)} <= set(result["validation"])
    old, _ = load_weights(tmp_path / "base" / "model.safetensors")
    new, meta = load_weights(tmp_path / "grown" / "model.safetensors")
    assert json.loads(meta["train"])["steps_done"] == 0 and json.loads(meta["config"])["groups"] == [1, 2, 4]
    assert torch.equal(new["quantizers.2.0.codebook"], old["quantizers.1.0.codebook"])
    assert torch.equal(new["g_s.1.conv1.weight"], old["g_s.1.conv1.weight"])
    assert new["quantizers.0.0.codebook"].shape[0] == 1
    img = np.full((40, 40, 3), 77, np.uint8)
    weights = tmp_path / "grown" / "model.safetensors"
    assert codec.decode(codec.encode(img, weights=weights, quality=1), weights=weights).shape == (40, 40, 3)
    assert train(tmp_path / "none", data_dir, "--steps", 0) == 1
    assert "--steps 0 needs --init" in capsys.readouterr().err

    # --only-levels 1: the new level's codebooks fit the frozen network; everything else stays bit for bit
    assert train(tmp_path / "fit", data_dir, "--config", config, "--init", weights, "--only-levels", 1, "--lr", 0.05) == 0
    fitted, _ = load_weights(tmp_path / "fit" / "model.safetensors")
    assert set(fitted) == set(new)
    changed = {k for k in new if not torch.equal(fitted[k], new[k])}
    assert changed and all(k.startswith("quantizers.0.") for k in changed), changed
    assert "quantizers.0.0.codebook" in changed
    assert train(tmp_path / "bad", data_dir, "--config", config, "--init", weights, "--only-levels", 4) == 1
    assert "--only-levels 4 is not a level of this ladder (1..3)" in capsys.readouterr().err
    assert main(["train", "hyperprior", "--preset", "tiny", "--data", str(data_dir / "training"), "--out", str(tmp_path / "hp"), "--only-levels", "1"]) == 1
    assert "--only-levels applies to mcquic" in capsys.readouterr().err
