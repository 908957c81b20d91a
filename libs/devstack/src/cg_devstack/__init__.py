"""Real NATS, PostgreSQL and Redis from PyPI packages, and the `make up` runner; for development and tests only."""
