"""Which variables and levels of a climate dataset feed which input channel of the official CRA5 model.

A :class:`~codec.climate.cra5_layout.Layout` lists the model's channels as (ERA5 variable, pressure level or
single level).  A grid variable of the source feeds the channels of an ERA5 variable when its name (in any
group) is the ERA5 short name (``t``, ``t2m``) or the CDS long name (``temperature``, ``2m_temperature``).
Pressure-level variables have a level dimension just before latitude whose coordinate (named ``level``,
``pressure_level``, ``isobaricInhPa``, ``plev``, ... or with units hPa / millibars / Pa) says each field's
level, in any order; single-level variables have none.  The dimensions before (time, ``valid_time``,
ensemble member, ... or none) are the *steps*: every variable must have the same ones, and each step is
one input of the model.

Every mismatch is a one-line :class:`~codec.errors.InputError`: a grid other than the layout's, grid
variables or levels the model has no channel for, missing channels (the first few named), steps that
differ between variables, and missing or infinite values (the network has no notion of a missing point).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import InputError
from .cra5_layout import Layout
from .dataset import ClimateSource
from .grid import GridVariable

LEVEL_NAMES = frozenset({"level", "levels", "pressure_level", "isobaricinhpa", "plev", "lev", "pressure"})
PRESSURE_UNITS = {"hpa": 1.0, "millibar": 1.0, "millibars": 1.0, "mbar": 1.0, "mb": 1.0, "pa": 0.01}  # -> hPa
SHOWN = 6  # names listed in an error message


@dataclass(frozen=True)
class Placement:
    """Where one grid variable goes in the model input: the channel of each of its fields in one step
    (in the order of its level dimension; one channel for a single-level variable)."""

    var: GridVariable
    level_dim: str | None
    channels: tuple[int, ...]

    @property
    def step_dims(self) -> tuple[tuple[str, int], ...]:
        """The (name, size) of the dimensions that index the steps."""
        lead = len(self.var.dims) - (3 if self.level_dim else 2)
        return tuple(zip(self.var.dims[:lead], self.var.shape[:lead], strict=True))


@dataclass(frozen=True)
class Plan:
    """The placements of every grid variable of a source, and the steps they share."""

    placements: tuple[Placement, ...]
    step_dims: tuple[tuple[str, int], ...]
    model: str

    @property
    def steps(self) -> int:
        """Number of model inputs (1 without step dimensions)."""
        return int(np.prod([n for _, n in self.step_dims], dtype=np.int64))

    def step_index(self, step: int) -> tuple[int, ...]:
        """The index of step ``step`` (C order) into the step dimensions."""
        return tuple(int(i) for i in np.unravel_index(step, [n for _, n in self.step_dims])) if self.step_dims else ()


def _listed(names: list[str]) -> str:
    """The first :data:`SHOWN` names, and how many more there are."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def plan(source: ClimateSource, layout: Layout, model: str) -> Plan:
    """How the grid variables of ``source`` fill ``layout``'s channels; one-line errors for every mismatch."""
    aliases = {name: c.variable for c in layout.channels for name in (c.variable, c.long_name)}
    placements, outside = [], []
    for var in source.variables:
        variable = aliases.get(var.name.rsplit("/", 1)[-1])
        if variable is None:
            outside.append(var.name)
            continue
        _check_grid(source, var, layout, model)
        placement, extra = _place(source, var, {c.level: c.index for c in layout.channels if c.variable == variable}, model)
        placements.append(placement)
        outside += extra
    _check_complete(placements, layout, model)
    if outside:
        raise InputError(
            f"the {model} model has no channel for {_listed(outside)}; drop them (xarray: ds.drop_vars / ds.sel) "
            "or encode them separately with the default climate model"
        )
    steps = placements[0].step_dims
    for p in placements[1:]:
        if p.step_dims != steps:
            raise InputError(
                f"variables do not share their steps: {placements[0].var.name} has {_dims(steps)}, {p.var.name} has "
                f"{_dims(p.step_dims)}; every variable needs the same leading (time) dimensions"
            )
    return Plan(tuple(placements), steps, model)


def _dims(dims: tuple[tuple[str, int], ...]) -> str:
    return "(" + ", ".join(f"{name}: {n}" for name, n in dims) + ")" if dims else "no time dimension"


def _span(values: np.ndarray) -> str:
    return f"{values[0]:g} to {values[-1]:g}"


def _check_grid(source: ClimateSource, var: GridVariable, layout: Layout, model: str) -> None:
    """One-line error unless ``var`` lies on ``layout``'s grid (same points, same order)."""
    lat, lon = source.latitudes(var), source.longitudes(var)
    want_lat, want_lon = layout.latitudes(), layout.longitudes()
    same_shape = lat.shape == want_lat.shape and lon.shape == want_lon.shape
    if same_shape and np.allclose(lat, want_lat, rtol=0, atol=1e-4) and np.allclose(lon, want_lon, rtol=0, atol=1e-4):
        return
    raise InputError(
        f"{var.name} is on a {lat.size} x {lon.size} grid (latitude {_span(lat)}, longitude {_span(lon)}); the {model} model "
        f"needs {layout.grid[0]} x {layout.grid[1]}: latitude {_span(want_lat)}, longitude {_span(want_lon)} "
        f"in steps of {360 / layout.grid[1]:g} degrees"
    )


def _hpa_per_unit(dim: str, coord: xr.Variable | None) -> float | None:
    """Hectopascals per unit of a pressure-level coordinate, or None when dimension ``dim`` is not one."""
    if coord is None or coord.dtype.kind not in "iuf":
        return None
    units = str(coord.attrs.get("units", "")).strip().lower()
    if units in PRESSURE_UNITS:
        return PRESSURE_UNITS[units]
    named = dim.lower() in LEVEL_NAMES or coord.attrs.get("standard_name") == "air_pressure"
    return 1.0 if named and not units else None


def _place(source: ClimateSource, var: GridVariable, levels: dict[int | None, int], model: str) -> tuple[Placement, list[str]]:
    """``var``'s placement given its variable's channels by level, and its fields the model has no channel for."""
    lead = var.dims[:-2]
    found = {d: f for d in lead if (f := _hpa_per_unit(d, source.dim_coordinate(var, d))) is not None}
    if None in levels:
        if found:
            raise InputError(f"{var.name} has pressure levels ({', '.join(found)}); the {model} model takes it at a single level")
        return Placement(var, None, (levels[None],)), []
    if not found:
        raise InputError(f"{var.name} has no pressure-level dimension (a coordinate such as level, pressure_level or isobaricInhPa, in hPa)")
    if list(found) != [lead[-1]]:
        raise InputError(f"{var.name} has dims ({', '.join(var.dims)}); its one pressure-level dimension must come just before latitude")
    dim = lead[-1]
    channels, extra = [], []
    for value in (np.asarray(source.dim_coordinate(var, dim).values, dtype=np.float64) * found[dim]).tolist():
        level = round(value) if np.isfinite(value) and abs(value - round(value)) <= 1e-6 * max(1.0, abs(value)) else None
        if level is not None and level in levels:
            channels.append(levels[level])
        else:
            extra.append(f"{var.name} at {value:g} hPa")
    return Placement(var, dim, tuple(channels)), extra


def _check_complete(placements: list[Placement], layout: Layout, model: str) -> None:
    """One-line error unless every channel of ``layout`` is given exactly once."""
    counts = np.bincount([c for p in placements for c in p.channels], minlength=len(layout.channels))
    twice = [c.name for c in layout.channels if counts[c.index] > 1]
    if twice:
        raise InputError(f"channels given more than once: {_listed(twice)} (e.g. both t and temperature, or a level repeated)")
    missing = [c.name for c in layout.channels if counts[c.index] == 0]
    if missing:
        raise InputError(f"the dataset lacks {len(missing)} of the {len(layout.channels)} channels the {model} model needs: {_listed(missing)}")


def step_blocks(source: ClimateSource, plan: Plan, step: int) -> Iterator[tuple[Placement, np.ndarray]]:
    """Each variable's fields of step ``step``: float64 [fields, H, W] in the order of ``Placement.channels``,
    read one variable at a time; one-line error for missing or infinite values."""
    index = plan.step_index(step)
    for p in plan.placements:
        block = source.block(p.var, index).reshape(len(p.channels), *p.var.field_shape)
        if not np.isfinite(block).all():
            what = "missing (NaN)" if np.isnan(block).any() else "infinite"
            raise InputError(f"{p.var.name} holds {what} values; the {plan.model} model needs complete, finite fields")
        yield p, block


def read_step(source: ClimateSource, plan: Plan, layout: Layout, step: int) -> np.ndarray:
    """The model's input of step ``step`` in file units: float32 [channels, H, W] in ``layout`` order."""
    out = np.empty((len(layout.channels), *layout.grid), np.float32)
    for p, block in step_blocks(source, plan, step):
        out[list(p.channels)] = block
    return out
