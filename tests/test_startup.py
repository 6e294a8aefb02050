"""Start-up cost: importing codec, building the CLI parser, xarray's engine scan and the cheap CLI
failures must not import torch (or compressai, or any model): they run in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "compressai", "codec.api", "codec.registry", "codec.models.mcquic", "codec.models.vaeformer", "codec.models.vqgan")


def _run(code: str) -> tuple[list[str], str]:
    """(heavy modules loaded, stderr) of ``code`` run in a fresh interpreter (which must exit 0)."""
    probe = f"{code}\nimport sys\nprint('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("HEAVY:"), proc.stdout
    return [m for m in line[len("HEAVY:"):].split(",") if m], proc.stderr


def _heavy_modules_after(code: str) -> list[str]:
    return _run(code)[0]


def test_import_codec_is_light():
    assert _heavy_modules_after("import codec; codec.CodecError; codec.__version__") == []


def test_cli_parser_and_help_are_light():
    code = "import codec.cli\ncodec.cli.build_parser()\ntry:\n    codec.cli.main(['--help'])\nexcept SystemExit:\n    pass"
    assert _heavy_modules_after(code) == []


def test_xarray_engine_scan_is_light():
    code = "import xarray\nengines = xarray.backends.list_engines()\nassert 'codec' in engines, sorted(engines)"
    assert _heavy_modules_after(code) == []


@pytest.mark.parametrize("command", ["decode", "info", "damage"])
def test_cheap_cli_failures_are_light(tmp_path, command):
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"not a codec file at all")
    for source, expected in ((tmp_path / "missing.bin", "no such file"), (foreign, "not a codec file")):
        args = [command, str(source)] + ([] if command == "info" else ["-o", str(tmp_path / "out.png")])
        if command == "damage":
            args += ["--drop", "0.1"]
        heavy, stderr = _run(f"import codec.cli\nassert codec.cli.main({args!r}) == 1")
        assert expected in stderr and stderr.count("\n") == 1, stderr
        assert heavy == [], f"{command} {source.name} imported {heavy}"


def test_model_listing_is_light():
    """``codec models`` (text and JSON) and ``codec.list_models()`` read checkpoint sizes and headers only."""
    code = "import codec, codec.cli\nassert codec.list_models()\nassert codec.cli.main(['models']) == 0\nassert codec.cli.main(['models', '--json']) == 0"
    assert _heavy_modules_after(code) == []


def test_lazy_public_api_resolves():
    import codec

    assert callable(codec.encode) and callable(codec.decode) and callable(codec.info)
    assert callable(codec.list_models) and callable(codec.load_model)
    with pytest.raises(AttributeError):
        codec.no_such_function  # noqa: B018


@pytest.mark.parametrize("name", ["vqgan-l5-packets-damaged.bin", "vaeformer-q3-bounded.cra"])
def test_info_reads_headers_without_models(name):
    """``codec info`` on an image and a climate file (golden files) loads no torch and no model."""
    path = Path(__file__).resolve().parent / "golden" / name
    heavy, stderr = _run(f"import codec.cli\nassert codec.cli.main(['info', {str(path)!r}]) == 0")
    assert heavy == [], heavy


def test_image_and_climate_coding_load_compressai_parts_without_its_package_import(tmp_path):
    """An image and a climate round trip import CompressAI's layers and entropy models but not ``compressai``
    itself (whose ``__init__`` imports torch_geometric and torch._dynamo: about 2.6 s per call); a later
    ``import compressai`` still works and gives the very classes the codec's networks are built from."""
    code = (
        "import numpy as np, xarray as xr, codec, sys\n"
        "img = (np.arange(64 * 96 * 3) % 251).astype(np.uint8).reshape(64, 96, 3)\n"
        "assert codec.decode(codec.encode(img, quality=1)).shape == img.shape\n"
        "t = 280 + 10 * np.cos(np.linspace(-1.5, 1.5, 19))[:, None] * np.ones((1, 36))\n"
        "ds = xr.Dataset({'t': (('lat', 'lon'), t)}, coords={'lat': np.linspace(90, -90, 19), 'lon': np.arange(36) * 10.0})\n"
        "assert codec.decode(codec.encode(ds))['t'].shape == (19, 36)\n"
        "from codec.models import vaeformer_official as cra5\n"
        "cra5.VAEformerOfficial(cra5.TINY)  # (its update() copies the entropy bottleneck)\n"
        "assert 'compressai.layers' in sys.modules and 'compressai.entropy_models' in sys.modules\n"
        "print('LOADED:' + ','.join(m for m in ('compressai', 'torch_geometric', 'torch._dynamo') if m in sys.modules))\n"
        "import compressai\n"
        "from codec.models import _compressai\n"
        "assert compressai.layers.ResidualBlock is _compressai.ResidualBlock\n"
        "from compressai.entropy_models import GaussianConditional\n"
        "assert GaussianConditional is _compressai.GaussianConditional\n"
    )
    loaded = [line for line in _fresh(code, tmp_path).splitlines() if line.startswith("LOADED:")]
    assert loaded == ["LOADED:"], loaded


def test_entropy_model_falls_back_to_the_real_package_when_the_placeholder_is_not_enough(tmp_path):
    """A constructor that asks ``compressai`` for more than the placeholder answers gets the real package."""
    code = (
        "import sys\n"
        "from codec.models import _compressai\n"
        "class Needy:\n"
        "    def __init__(self, x):\n"
        "        from compressai import set_entropy_coder\n"
        "        self.x = x\n"
        "assert _compressai.entropy_model(Needy, 3).x == 3\n"
        "import compressai\n"
        "assert callable(compressai.set_entropy_coder) and compressai.get_entropy_coder() == 'ans'\n"
        "gc = _compressai.entropy_model(_compressai.GaussianConditional, None)\n"
        "assert gc.entropy_coder.name == 'ans'\n"
    )
    _fresh(code, tmp_path)


def _fresh(code: str, cwd: Path) -> str:
    """stdout of ``code`` run in a fresh interpreter in ``cwd`` (which must exit 0)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
