"""Plaintext OpenAI-shaped keys for tests: random, so every test's secret is its own and easy to search for."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_letters + string.digits


def fake_openai_key(prefix: str = "sk-proj-") -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(48))
