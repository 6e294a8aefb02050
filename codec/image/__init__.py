"""Images: reading and writing image files (io), file assembly (coding), resilient packets, parity and
the names of erasable streams.  Mirrors :mod:`codec.climate`; the model layer imports nothing from here."""
