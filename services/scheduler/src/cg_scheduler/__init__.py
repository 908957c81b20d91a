"""Cost Guardian's scheduler service."""
