"""JSON (de)serialization of the models' configuration dataclasses, written once.

Configurations are frozen dataclasses whose sequence fields are tuples (hashable, immutable); their
JSON form, stored in every checkpoint's metadata, has lists.  Nested configurations (a dataclass
field holding another :class:`JSONConfig`) become nested objects.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self


def _to_json(value: Any) -> Any:
    if isinstance(value, JSONConfig):
        return value.to_dict()
    return [_to_json(v) for v in value] if isinstance(value, tuple | list) else value


def _from_json(value: Any) -> Any:
    return tuple(_from_json(v) for v in value) if isinstance(value, list | tuple) else value


def _nested_type(field: dataclasses.Field) -> type[JSONConfig] | None:
    """The configuration class a field holds, judged by its default (for nested configurations)."""
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return type(default) if isinstance(default, JSONConfig) else None


class JSONConfig:
    """Mixin of configuration dataclasses: :meth:`to_dict` (tuples to lists) and :meth:`from_dict` (inverse)."""

    def to_dict(self) -> dict:
        """JSON-serializable form (stored in checkpoints)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ``TypeError``."""
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__} must be a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise TypeError(f"unknown {cls.__name__} keys: {unknown}")
        kwargs = {}
        for name, value in d.items():
            nested = _nested_type(known[name])
            kwargs[name] = nested.from_dict(value) if nested is not None else _from_json(value)
        return cls(**kwargs)
