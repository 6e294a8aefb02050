"""Neural codec models."""
