"""Names of the streams a channel may lose in a resilient file (light: used before any model loads)."""

from __future__ import annotations

import re

from .parity import is_parity

PACKET = re.compile(r"p(?:0|[1-9][0-9]*)", re.ASCII)


def is_packet(name: str) -> bool:
    """True for the name of an index packet (``p0``, ``p1``, ...)."""
    return PACKET.fullmatch(name) is not None


def is_erasable(name: str) -> bool:
    """True for a stream a channel may lose: an index packet or a parity packet (``f0``, ...)."""
    return is_packet(name) or is_parity(name)
