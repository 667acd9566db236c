"""component stage."""
