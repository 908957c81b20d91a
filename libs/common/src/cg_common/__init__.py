"""Cost Guardian's shared library."""
