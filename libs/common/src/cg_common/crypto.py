"""Encryption of stored OpenAI keys with a rotatable list of Fernet master keys, plus fingerprint and mask."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Longest prefix first, so that `sk-proj-…` keeps its project marker in the mask.
KEY_PREFIXES = ("sk-svcacct-", "sk-admin-", "sk-proj-", "sk-")


class KeyCipher:
    """The first master key encrypts; every listed master key decrypts (MultiFernet)."""

    def __init__(self, master_keys: Sequence[str]) -> None:
        if not master_keys:
            raise ValueError("at least one master key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in master_keys])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        return self._fernet.decrypt(ciphertext).decode()

    def can_decrypt(self, ciphertext: bytes) -> bool:
        try:
            self._fernet.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt under the first master key; raises InvalidToken when no listed key opens it."""
        return self._fernet.rotate(ciphertext)


def new_master_key() -> str:
    return Fernet.generate_key().decode()


def fingerprint(api_key: str) -> str:
    """First 16 hex characters of the key's SHA-256: how other systems name a key without holding it."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def mask(api_key: str) -> str:
    return mask_parts(prefix_of(api_key), api_key[-4:])


def prefix_of(api_key: str) -> str:
    return next((p for p in KEY_PREFIXES if api_key.startswith(p)), "")


def mask_parts(prefix: str, last4: str) -> str:
    return f"{prefix or 'sk-'}…{last4}"
