"""Models at run time: the codec's own thread count, inference mode, and the model a file needs.

Shared by the image and climate file layers (:mod:`codec.image.coding`, :mod:`codec.climate.coding`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from . import catalog, container, registry
from .errors import FormatError, InputError, ModelError

DEFAULT_THREADS = 2
"""Torch threads used for inference.  Fixed (not the caller's setting) so bytes and decodes are
identical whatever ``torch.set_num_threads`` says; override with the ``CODEC_THREADS`` variable."""

_forked = False  # True in a process forked from one that imported the codec (e.g. a DataLoader worker)


def _mark_forked() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)


def codec_threads() -> int:
    """The codec's own torch thread count (``CODEC_THREADS``, default 2); 1 in a forked process.

    A process forked after its parent ran a multi-threaded torch op cannot use OpenMP threads (the
    parent's pool does not exist in the child, and the op hangs), so forked children such as
    ``DataLoader`` workers code on one thread.  Climate fields decode identically; image pixels may
    differ from a two-thread decode by float rounding (use ``multiprocessing_context="spawn"`` for
    bit-identical pixels in workers).
    """
    if _forked:
        return 1
    try:
        return max(1, int(os.environ.get("CODEC_THREADS", DEFAULT_THREADS)))
    except ValueError:
        raise InputError("CODEC_THREADS must be an integer") from None


@contextmanager
def inference() -> Iterator[None]:
    """Run networks with the codec's own thread count and no autograd; restore the caller's threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(codec_threads())
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


def run(fn):  # noqa: ANN001, ANN202 - passes a callable through the inference context
    """``fn()`` inside :func:`inference` (for lazy decoders that run later, e.g. on dask's threads)."""
    with inference():
        return fn()


def model_for(c: container.Container, weights: str | os.PathLike | None) -> registry.LoadedModel:
    """The loaded model (shipped, or ``weights``) that made container ``c``; one-line errors when it does not fit."""
    name, quality, digest = (c.model.get(k) for k in ("name", "quality", "weights_hash"))
    if not isinstance(name, str) or not isinstance(digest, str):
        raise FormatError("header does not identify the model")
    if weights is None and not isinstance(quality, int):
        raise ModelError(f"file was encoded with custom {name} weights ({digest}); pass them as weights (--weights)")
    loaded = registry.load(name, quality, weights)
    if loaded.spec.name != name:
        raise ModelError(f"file needs model {name}, weights are for {loaded.spec.name}")
    if loaded.weights_hash != digest:
        source = weights or f"the shipped {name} q{quality}"
        hint = "" if weights else (catalog.retired_hint(digest) or "; pass the weights it was made with as weights (--weights)")
        raise ModelError(f"file was encoded with {name} weights {digest}, but {source} has {loaded.weights_hash}{hint}")
    return loaded


def model_id(loaded: registry.LoadedModel) -> dict:
    """What a file header records about the model that made it."""
    return {"name": loaded.spec.name, "quality": loaded.quality, "weights_hash": loaded.weights_hash}
