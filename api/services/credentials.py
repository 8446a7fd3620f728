"""Credentials callers present (merchant API keys, agent tokens): 256 random bits each, shown once,
kept only as their sha256. A fast hash is enough for that much randomness, and looking a caller
up by the hash means no stored value works as a credential and no comparison leaks timing."""

from __future__ import annotations

import hashlib
import secrets


def hash_credential(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_credential(prefix: str) -> str:
    """``prefix`` and 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)
