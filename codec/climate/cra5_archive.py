"""ERA5 datasets <-> one container file through the official CRA5 VAEformer, one step (time) at a time.

The grid variables of a dataset are matched to the model's channels by :mod:`codec.climate.cra5_source`.
Each step is stacked into the model's input in file units, normalized (:meth:`Layout.normalize`), coded
by :meth:`VAEformerOfficial.compress` and decoded again, to measure the errors and, with error bounds, to
code every bounded field's residual with :mod:`codec.climate.errorbound`.  Memory stays at one step.

Streams of the ``climate`` container (model ``vaeformer-official``, ``meta.steps`` = number of steps):

``skeleton``   everything but the grid variables' values, as :mod:`codec.climate.archive` stores it
``variables``  as :mod:`codec.climate.archive`: per grid variable its description, bound and measured errors
``cra5``       deflated JSON: the channel ``layout`` (:meth:`Layout.to_json`, so the file says how it was
               normalized) and per grid variable the ``channels`` of its fields within one step
``s<t>``       step ``t``: :func:`archive.join_blobs` of the network's latent and hyper-latent streams, then
               one residual per field of each bounded variable (variable order, then its fields' order)

Decoding is lazy: each field is a dask chunk computed from its step's decoded network output, one task
shared by all fields of the step, so writing a netCDF file (or ``ds.load()``) decodes each step once.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import xarray as xr

from .. import container
from ..errors import CodecError, CorruptStreamError, FormatError, InputError
from ..models.vaeformer_official import MODEL_NAME, VAEformerOfficial
from . import archive, cra5_source, dataset, errorbound, fieldcodec, skeleton, storage
from .cra5_layout import Layout, layout_for
from .grid import GridVariable

NETWORK_STREAMS = 2  # latent, hyper-latent (VAEformerOfficial.compress)
Step = tuple[np.ndarray, list[bytes]]  # a decoded step: network output [channels, H, W] in file units, the step's blobs


def model_layout(net: VAEformerOfficial) -> Layout:
    """The channel layout of ``net`` (:func:`layout_for`; the published one for the 268-channel model)."""
    try:
        return layout_for(net.config.in_channels, net.config.image_size)
    except KeyError as exc:
        raise InputError(f"{MODEL_NAME}: {exc.args[0]} (the published model has 268 channels on 721 x 1440)") from None


def _check_fits(layout: Layout, net: VAEformerOfficial, error: type[CodecError]) -> None:
    cfg = net.config
    if len(layout.channels) != cfg.in_channels or tuple(layout.grid) != tuple(cfg.image_size):
        raise error(
            f"the channel layout ({len(layout.channels)} channels on {layout.grid[0]} x {layout.grid[1]}) does not fit the "
            f"{MODEL_NAME} network ({cfg.in_channels} channels on {cfg.image_size[0]} x {cfg.image_size[1]})"
        )


def reconstruction(net: VAEformerOfficial, layout: Layout, streams: list[bytes]) -> np.ndarray:
    """What a decoder makes of one step's network streams: float32 [channels, H, W] in file units."""
    return layout.denormalize(net.decompress(streams, layout.grid)[0]).numpy()


def encode(
    source: dataset.ClimateSource,
    net: VAEformerOfficial,
    model_id: dict,
    layout: Layout | None = None,
    bounds: dict[str, float] | float | None = None,
    progress: Callable[[Iterator, int], Iterator] | None = None,
) -> bytes:
    """Compress the grid variables of ``source`` (exactly ``layout``'s channels; default :func:`model_layout`)
    step by step with ``net``; ``bounds`` as :func:`errorbound.parse_bounds`, ``progress`` wraps the steps."""
    layout = layout or model_layout(net)
    _check_fits(layout, net, InputError)
    archive.check_bound_names(bounds, source.variables)
    plan = cra5_source.plan(source, layout, MODEL_NAME)
    specs = [archive.field_spec(p.var, errorbound.bound_for(bounds, p.var.name)) for p in plan.placements]
    stats = [archive.ErrorStats() for _ in plan.placements]
    steps: Iterator[int] = iter(range(plan.steps))
    steps = progress(steps, plan.steps) if progress else steps
    coded = [(f"s{t}", _encode_step(source, plan, layout, net, specs, stats, t)) for t in steps]
    described = [
        {"variable": p.var.to_json(), "max_abs_error_bound": spec.bound, "errors": s.to_json()}
        for p, spec, s in zip(plan.placements, specs, stats, strict=True)
    ]
    table = {"layout": layout.to_json(), "channels": [list(p.channels) for p in plan.placements]}
    head = [
        ("skeleton", source.skeleton()),
        ("variables", archive.variables_stream(described)),
        ("cra5", zlib.compress(json.dumps(table, separators=(",", ":")).encode(), 9)),
    ]
    meta = {"variables": len(described), "steps": plan.steps}
    return container.pack(
        container.Container(kind="climate", model=model_id, shape=[max(plan.steps, 1)], dtype="float32", streams=head + coded, meta=meta)
    )


def _encode_step(
    source: dataset.ClimateSource,
    plan: cra5_source.Plan,
    layout: Layout,
    net: VAEformerOfficial,
    specs: list[fieldcodec.FieldSpec],
    stats: list[archive.ErrorStats],
    step: int,
) -> bytes:
    """The blobs of one step; ``stats`` count its errors.  The source is read twice (once to stack the model's
    float32 input, once per variable for the exact values), so memory stays at one step."""
    streams = net.compress(layout.normalize(torch.from_numpy(cra5_source.read_step(source, plan, layout, step)))[None])
    recon = reconstruction(net, layout, streams)
    residuals = []
    for (p, block), spec, st in zip(cra5_source.step_blocks(source, plan, step), specs, stats, strict=True):
        for field, channel in zip(block, p.channels, strict=True):
            out = recon[channel].astype(np.float64)
            if spec.bound is not None:
                r, out = errorbound.encode(field, out, spec.bound, spec.packing, spec.dtype, spec.int_range)
                residuals.append(r)
            st.add(field, storage.storable(out, p.var))
    return archive.join_blobs([*streams, *residuals])


@dataclass(frozen=True)
class _Table:
    """The ``cra5`` stream, checked against the variables table and the header."""

    layout: Layout
    channels: list[tuple[int, ...]]  # per grid variable: the channel of each of its fields in one step
    residuals: list[int | None]  # per grid variable: where its first residual lies among a step's blobs (None: no bound)
    blobs: int  # blobs per step
    steps: int


def _table(c: container.Container, variables: list[GridVariable], bounds: list[float | None]) -> _Table:
    try:
        d = json.loads(zlib.decompress(c.stream("cra5")))
        layout = Layout.from_json(d["layout"])
        channels = [tuple(ch) for ch in d["channels"]]
    except (zlib.error, ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise FormatError("CRA5 channel table is corrupt") from None
    steps = c.meta.get("steps")
    if type(steps) is not int or steps < 0 or len(channels) != len(variables):
        raise FormatError("CRA5 channel table does not match the header")
    residuals, blobs = [], NETWORK_STREAMS
    for var, chans, bound in zip(variables, channels, bounds, strict=True):
        valid = all(type(ch) is int and 0 <= ch < len(layout.channels) for ch in chans)
        if not chans or not valid or var.n_fields != steps * len(chans) or var.field_shape != layout.grid:
            raise FormatError(f"CRA5 channels of {var.name} do not match its shape")
        residuals.append(None if bound is None else blobs)
        blobs += 0 if bound is None else len(chans)
    return _Table(layout, channels, residuals, blobs, steps)


def _described(c: container.Container) -> tuple[list[GridVariable], list[float | None], _Table]:
    """The grid variables, their bounds and the checked ``cra5`` table of a container."""
    described = archive.described_variables(c)
    variables = archive.grid_variables(described)
    bounds = [d.get("max_abs_error_bound") for d in described]
    return variables, bounds, _table(c, variables, bounds)


def _step_streams(c: container.Container, steps: int) -> list[bytes]:
    named = dict(c.streams)
    missing = [f"s{t}" for t in range(steps) if f"s{t}" not in named]
    if missing:
        raise FormatError(f"stream {missing[0]!r} missing from file")
    return [named[f"s{t}"] for t in range(steps)]


def summary(c: container.Container) -> tuple[dict, list[dict]]:
    """What ``codec info`` adds for a CRA5 file: totals (steps, channels, grid, network and residual bytes),
    and per grid variable its number of channels and residual bytes."""
    variables, _, table = _described(c)
    network, per_variable = 0, [0] * len(variables)
    for t, data in enumerate(_step_streams(c, table.steps)):
        blobs = archive.split_blobs(data, f"step {t}")
        network += sum(len(b) for b in blobs[:NETWORK_STREAMS])
        for k, first in enumerate(table.residuals):
            if first is not None:
                per_variable[k] += sum(len(b) for b in blobs[first : first + len(table.channels[k])])
    totals = {
        "steps": table.steps,
        "channels": len(table.layout.channels),
        "grid": list(table.layout.grid),
        "network_bytes": network,
        "residual_bytes": sum(per_variable),
    }
    return totals, [{"channels": len(ch), "residual_bytes": n} for ch, n in zip(table.channels, per_variable, strict=True)]


class Cra5Archive:
    """Lazy access to the steps and fields of a CRA5 container (decoding guarded by one lock)."""

    def __init__(self, c: container.Container, net: VAEformerOfficial, run: Callable[[Callable[[], np.ndarray]], np.ndarray]) -> None:
        self.container, self.net, self._run = c, net, run
        self.variables, self.bounds, self.table = _described(c)
        _check_fits(self.table.layout, net, FormatError)
        self._steps = _step_streams(c, self.table.steps)
        self._position = {v.name: i for i, v in enumerate(self.variables)}
        self._token = uuid.uuid4().hex
        self._lock = archive.DecodeLock()

    def step(self, t: int) -> Step:
        """Step ``t`` decoded: the network's output (float32 [channels, H, W], file units) and the step's blobs."""
        blobs = archive.split_blobs(self._steps[t], f"step {t}")
        if len(blobs) != self.table.blobs:
            raise CorruptStreamError(f"step {t} holds {len(blobs)} streams, expected {self.table.blobs}")
        with self._lock:
            recon = self._run(lambda: reconstruction(self.net, self.table.layout, blobs[:NETWORK_STREAMS]))
        return recon, blobs

    def field(self, var: GridVariable, i: int, step: Step) -> np.ndarray:
        """Field ``i`` (C order of its leading dims) of ``var``, float64, from its decoded ``step`` (:meth:`step`)."""
        k = self._position[var.name]
        j = i % len(self.table.channels[k])
        recon, blobs = step
        out = recon[self.table.channels[k][j]].astype(np.float64)
        first = self.table.residuals[k]
        if first is None:
            return out
        spec = archive.field_spec(var, self.bounds[k])
        return errorbound.decode(blobs[first + j], out, np.ones(spec.shape, bool), spec.bound, spec.packing, spec.dtype, spec.int_range)

    def shared(self, var: GridVariable, i: int) -> tuple[tuple[str, int], Callable[[], Step]]:
        """The dask key and computation of the decoded step that field ``i`` of ``var`` comes from."""
        t = i // len(self.table.channels[self._position[var.name]])
        return (f"cra5-step-{self._token}", t), partial(self.step, t)

    def dataset(self) -> xr.Dataset | xr.DataTree:
        """The lazily decoded dataset."""
        return skeleton.rebuild(self.container.stream("skeleton"), self.variables, self.field, self.shared)
