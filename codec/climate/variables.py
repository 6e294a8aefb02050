"""The ``variables`` table of a climate file: what each coded variable is (read without any model).

Light on purpose (numpy and the dataset description, no torch): ``codec info`` reads it.
"""

from __future__ import annotations

import json
import math
import zlib

from .. import container
from ..errors import CorruptStreamError, FormatError
from .grid import GridVariable

MAX_FIELD_POINTS = 1 << 26


def described_variables(c: container.Container) -> list[dict]:
    """The ``variables`` stream of a climate container, validated."""
    try:
        described = json.loads(zlib.decompress(c.stream("variables")))
    except (zlib.error, ValueError, UnicodeDecodeError):
        raise CorruptStreamError("variables table is corrupt") from None
    if not isinstance(described, list) or len(described) != c.meta.get("variables"):
        raise FormatError("variables table does not match the header")
    for d in described:
        if not isinstance(d, dict) or not isinstance(d.get("variable"), dict) or not isinstance(d.get("errors"), dict):
            raise FormatError("variables table entry is malformed")
        bound = d.get("max_abs_error_bound")
        if bound is not None and not (isinstance(bound, int | float) and not isinstance(bound, bool) and math.isfinite(bound) and bound > 0):
            raise FormatError("variables table has an invalid error bound")
    return described


def grid_variables(described: list[dict]) -> list[GridVariable]:
    """The validated grid variables of a ``variables`` table."""
    try:
        variables = [GridVariable.from_json(d["variable"]) for d in described]
        for var in variables:
            var.packing()  # validates the packing factors
    except (KeyError, TypeError, ValueError):
        raise FormatError("variables table entry is malformed") from None
    for var in variables:
        h, w = var.field_shape
        if h * w > MAX_FIELD_POINTS:
            raise FormatError(f"field of {var.name} is {h} x {w}, more than this codec decodes")
    return variables
