"""Cost Guardian's REST API service."""
