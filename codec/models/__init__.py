"""Neural codec models."""

MCQUIC_OFFICIAL_MODEL = "mcquic-official"
"""Header name of the official McQuic network (:mod:`codec.models.mcquic_official`); here so that the model
catalogue (:mod:`codec.catalog`) names it without loading torch."""

CRA5_MODEL = "vaeformer-official"
"""Header name of the official CRA5 network (its files code all channels of a step together); here, not in
:mod:`codec.models.vaeformer_official`, so that ``codec info`` recognizes such files without loading torch."""
