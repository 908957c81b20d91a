"""Cost Guardian's prober service."""
