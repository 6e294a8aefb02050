"""A plain (non-editable) install ships the checkpoints and model cards and the `codec` command."""

import subprocess
import sys
import zipfile
from pathlib import Path

from codec import catalog

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_checkpoints_cards_and_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("codec-*.whl"))).namelist())
    shipped = sorted(p.name for p in catalog.CHECKPOINTS.glob("*") if p.suffix in (".safetensors", ".md"))
    assert shipped, "no shipped checkpoints or model cards"
    assert {f"codec/checkpoints/{n}" for n in shipped} <= names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "codec = codec.cli:main" in zipfile.ZipFile(next(tmp_path.glob("codec-*.whl"))).read(entry).decode()
