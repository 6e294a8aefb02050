"""Neural codec models."""

CRA5_MODEL = "vaeformer-official"
"""Header name of the official CRA5 network (its files code all channels of a step together); here, not in
:mod:`codec.models.vaeformer_official`, so that ``codec info`` recognizes such files without loading torch."""
