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

The climate networks construct CompressAI's entropy models, whose constructor asks the package for
its entropy coders: :func:`entropy_model` answers that from the placeholder too.  While the
placeholder is in ``sys.modules`` (the first model load of a process), another thread's ``import
compressai`` would see it, so these functions hold a lock against each other and models are loaded
before coding threads start (the dask paths load the network first).  Entropy models are never
deep-copied here: unpickling one imports the real package (CompressAI's ``__setstate__``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")

_LOCK = threading.RLock()


@contextlib.contextmanager
def _placeholder() -> Iterator[ModuleType | None]:
    """While held: ``compressai`` in ``sys.modules`` is the installed package with its ``__init__`` not run
    (None if the real package is already imported: then nothing is changed)."""
    with _LOCK:
        if "compressai" in sys.modules:
            yield None
            return
        spec = importlib.util.find_spec("compressai")
        if spec is None:
            raise ModuleNotFoundError("No module named 'compressai'", name="compressai")
        package = importlib.util.module_from_spec(spec)  # the package with its __path__, its __init__ not run
        sys.modules["compressai"] = package
        try:
            yield package
        finally:
            if sys.modules.get("compressai") is package:
                del sys.modules["compressai"]


def submodule(name: str) -> ModuleType:
    """``compressai.<name>``, imported without running ``compressai/__init__.py`` (unless it already ran)."""
    with _placeholder():
        return importlib.import_module(f"compressai.{name}")


def entropy_model(cls: type[T], *args: object) -> T:
    """``cls(*args)`` for CompressAI's ``EntropyBottleneck`` / ``GaussianConditional`` without ``import compressai``.

    Their constructor asks the package for its entropy coders (``available_entropy_coders``,
    ``get_entropy_coder``, ``ans``), which the placeholder answers as the real package does by default
    (``"ans"``; the codec never codes with it: its bytes go through :mod:`codec.entropy`).  Should a
    CompressAI version ask for more, the real package is imported and the constructor runs as usual.
    """
    with _placeholder() as package:
        if package is not None:
            package.ans = importlib.import_module("compressai.ans")
            package.available_entropy_coders = lambda: ["ans"]
            package.get_entropy_coder = lambda: "ans"
            try:
                return cls(*args)
            except (ImportError, AttributeError):
                del sys.modules["compressai"]
    importlib.import_module("compressai")
    return cls(*args)


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
