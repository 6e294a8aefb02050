"""Weights and training state in safetensors files (never pickle).

A model file holds the model's tensors plus string metadata (``model``, ``config`` as JSON, ...).
A training-state file additionally holds the optimizer's tensors and, as JSON metadata, its
param groups, the step, and the random-number-generator states, so training resumes exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .catalog import read_metadata
from .errors import ModelError
from .fileio import write_atomic_with

OPTIM_PREFIX = "optimizer."


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """Content hash (16 hex digits) of a state dict: names, dtypes, shapes and bytes, in sorted order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d tensors too
    return h.hexdigest()[:16]


def atomic_save(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write a safetensors file through a temporary file and an atomic rename."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic_with(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, Any]) -> str:
    """Save a model's state dict with JSON-encoded metadata; returns the weights hash."""
    state = model.state_dict()
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    meta["weights_hash"] = weights_hash(state)
    atomic_save(state, path, meta)
    return meta["weights_hash"]


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, with a one-line error if it is unreadable."""
    try:
        return load_file(str(path)), read_metadata(path)
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read weights {path}: {exc}") from None


def save_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    extra: dict[str, Any],
) -> None:
    """Save everything needed to resume training at ``step``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            tensors[f"{OPTIM_PREFIX}{pid}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": str(step), "param_groups": json.dumps(opt["param_groups"]), "extra": json.dumps(extra)}
    atomic_save(tensors, path, meta)


def load_training_state(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, dict[str, Any]]:
    """Restore model, optimizer and RNG from :func:`save_training_state`; returns ``(step, extra)``."""
    tensors, meta = load_weights(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(OPTIM_PREFIX):
            pid, key = name[len(OPTIM_PREFIX) :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), json.loads(meta["extra"])


def check_state_dict(expected: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], what: str) -> None:
    """One-line ``ModelError`` unless ``sd`` has exactly the keys and shapes of ``expected`` (e.g. a
    model's ``state_dict()``); ``what`` names the file in the message."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        raise ModelError(f"{what} lacks {len(missing)} tensors, e.g. {missing[0]!r}")
    if unexpected:
        raise ModelError(f"{what} has {len(unexpected)} unexpected tensors, e.g. {unexpected[0]!r}")
    for key, value in expected.items():
        if tuple(sd[key].shape) != tuple(value.shape):
            raise ModelError(f"{what} tensor {key!r} has shape {list(sd[key].shape)}, expected {list(value.shape)}")


def check_network_tensors(expected: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], what: str) -> None:
    """:func:`check_state_dict`, and every tensor of ``sd`` floating point and finite (official checkpoints)."""
    check_state_dict(expected, sd, what)
    for key, value in sd.items():
        if not value.is_floating_point():
            raise ModelError(f"{what} tensor {key!r} has dtype {value.dtype}, expected floating point")
        if not bool(torch.isfinite(value).all()):
            raise ModelError(f"{what} tensor {key!r} has non-finite values")


def count_submodules(sd: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of consecutive sub-modules ``prefix0.``, ``prefix1.``, ... present in ``sd``."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in sd):
        n += 1
    return n


def read_official_state_dict(
    path: str | os.PathLike, what: str, pick: Callable[[dict], object], held: str, inert_prefixes: tuple[str, ...] = (), hint: str | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state dict, loaded object)`` of an official PyTorch checkpoint, safely unpickled, with one-line errors.

    ``pick(obj)`` selects the state dict of the loaded object (a dict), ``held`` names it in the error
    when it is not a non-empty dict of named tensors, ``what`` names the kind of file expected.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    obj = safe_torch_load(path, inert_prefixes, hint if hint is not None else f"not {what}")
    sd = pick(obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ModelError(f"{path} holds no {held} of tensors; not {what}")
    return sd, obj


def tensor_shape(sd: dict[str, torch.Tensor], key: str, dims: int, what: str) -> tuple[int, ...]:
    """Shape of ``sd[key]``, with a one-line ``ModelError`` if it is missing (the file is not ``what``)
    or does not have ``dims`` dimensions."""
    if key not in sd:
        raise ModelError(f"checkpoint lacks {key!r}; not {what}")
    shape = tuple(sd[key].shape)
    if len(shape) != dims:
        raise ModelError(f"checkpoint tensor {key!r} has shape {list(shape)}, expected {dims} dimensions")
    return shape


class _Inert:
    """Stand-in for a refused-but-harmless pickled global: stores whatever it is given, does nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: object) -> None:
        self.state = state


def _inert(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (_Inert,), {"__qualname__": name})


def safe_torch_load(path: str | os.PathLike, inert_prefixes: tuple[str, ...] = (), hint: str = "") -> object:
    """A PyTorch pickle (``.ckpt``, ``.pth`` ...) read with ``torch.load(weights_only=True)``.

    Globals whose names start with ``inert_prefixes`` (training bookkeeping) load as inert
    placeholders; any other pickled object refuses the file.  Every failure is a one-line
    ``ModelError`` (``hint`` is appended to a refusal), never an unpickled object.
    """
    path = Path(path)
    unreadable = f"cannot read checkpoint {path} (corrupt, truncated or not a PyTorch file)"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # most likely a refused global: find out which ones
    except Exception as exc:  # noqa: BLE001 - a loader reports every failure as one line
        raise ModelError(f"{unreadable}: {_first_line(exc)}") from None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any failure to scan means we cannot load it safely
        raise ModelError(f"{unreadable}: {_first_line(exc)}") from None
    refused = [n for n in names if not n.startswith(inert_prefixes)]
    if refused:
        raise ModelError(f"{path} pickles {refused[0]!r}, which safe loading refuses" + (f"; {hint}" if hint else ""))
    if not names:
        raise ModelError(f"{unreadable}: unpickling failed")
    try:
        with torch.serialization.safe_globals([(_inert(n), n) for n in names]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{unreadable}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
