"""A netCDF file's groups as a dict of ``xarray.Dataset`` (``None`` = the root): how they are opened,
closed and assembled into an ``xarray.DataTree``, and the one-line form of backend errors."""

from __future__ import annotations

import xarray as xr

OPEN = {"decode_times": False, "decode_timedelta": False, "mask_and_scale": True}
"""How sources and skeletons are opened: raw time numbers (exact, and some units xarray cannot decode),
physical values with NaN where missing."""

Groups = dict[str | None, xr.Dataset]


def one_line(exc: BaseException) -> str:
    """``exc`` as one short line (backend errors can span many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def close(groups: Groups) -> None:
    """Close every dataset of ``groups``."""
    for ds in groups.values():
        ds.close()


def as_tree(groups: Groups, error: type[Exception], message: str) -> xr.DataTree:
    """``groups`` as a DataTree, or ``error(message: reason)`` when they do not nest as one."""
    try:
        return xr.DataTree.from_dict({"/" + (g or ""): ds for g, ds in groups.items()})
    except ValueError as exc:
        raise error(f"{message}: {one_line(exc)}") from None
