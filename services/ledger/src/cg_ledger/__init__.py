"""Cost Guardian's ledger service."""
