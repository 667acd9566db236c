"""regrid stage."""
