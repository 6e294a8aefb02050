"""The parts of CompressAI the codec's models are built from, without ``import compressai``'s start-up.

``import compressai`` runs its package ``__init__``, which imports every subpackage: the point-cloud
datasets import ``torch_geometric``, which imports ``torch._dynamo``, and the zoo, losses and
optimizers follow.  On the 2-core machine that is about 2.6 s on top of torch itself, paid by every
``codec encode`` / ``decode`` call that needs a model (``python -X importtime``).  The codec uses two of
its modules, ``compressai.layers`` and ``compressai.entropy_models``: :func:`submodule` imports them from
the installed CompressAI under their own names while the package's ``__init__`` is skipped, then takes
the placeholder package out of ``sys.modules`` again.  A later ``import compressai`` (the CompressAI
baseline, the hyperprior trainer) runs the real ``__init__``, which finds these submodules already
imported, so its classes are the very objects imported here (``tests/test_startup.py``).

Limits: the climate networks construct CompressAI's entropy models, whose constructor imports
``compressai`` itself (for its entropy-coder registry), so climate calls still pay the full import; and
while the placeholder is in ``sys.modules`` (the first model load of a process), another thread's
``import compressai`` would see it, so :func:`submodule` holds a lock against its own concurrent calls and
models are loaded before coding threads start (the dask paths load the network first).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

_LOCK = threading.RLock()


def submodule(name: str) -> ModuleType:
    """``compressai.<name>``, imported without running ``compressai/__init__.py`` (unless it already ran)."""
    full = f"compressai.{name}"
    with _LOCK:
        if full in sys.modules or "compressai" in sys.modules:
            return importlib.import_module(full)
        spec = importlib.util.find_spec("compressai")
        if spec is None:
            raise ModuleNotFoundError("No module named 'compressai'", name="compressai")
        package = importlib.util.module_from_spec(spec)  # the package with its __path__, its __init__ not run
        sys.modules["compressai"] = package
        try:
            return importlib.import_module(full)
        finally:
            if sys.modules.get("compressai") is package:
                del sys.modules["compressai"]


_HOME = {
    "AttentionBlock": "layers",
    "ResidualBlock": "layers",
    "ResidualBlockUpsample": "layers",
    "ResidualBlockWithStride": "layers",
    "conv3x3": "layers",
    "subpel_conv3x3": "layers",
    "EntropyBottleneck": "entropy_models",
    "GaussianConditional": "entropy_models",
}
"""The names this module gives, and the CompressAI module each comes from (imported on first use: the
image networks need only ``layers``, and ``entropy_models`` imports scipy.stats, another 0.7 s)."""


def __getattr__(name: str) -> object:
    if name in _HOME:
        return getattr(submodule(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
