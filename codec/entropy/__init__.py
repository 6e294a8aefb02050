"""Entropy models and coders shared by every codec (constriction under the hood)."""

from . import categorical, gaussian, tables

__all__ = ["categorical", "gaussian", "tables"]
