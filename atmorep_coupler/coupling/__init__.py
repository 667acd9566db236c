"""coupling stage."""
