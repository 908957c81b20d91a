"""Cost Guardian's web dashboard."""
