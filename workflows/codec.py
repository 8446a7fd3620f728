"""Payload encryption: every payload printflow exchanges with Temporal is AES-GCM encrypted.

``PRINTFLOW_PAYLOAD_KEYS`` is ``id:base64key,...`` (``settings.parse_payload_keys``): 256-bit
keys, the first encrypts, all of them decrypt, so a key is rotated by putting the new one first
and keeping the old ones as long as histories written with them are read (replays, the Web UI).

An encrypted payload has the metadata ``encoding: binary/encrypted`` and
``encryption-key-id: <id>``; its data is a 12-byte nonce followed by the AES-GCM ciphertext of
the original payload (metadata and data, serialized), authenticated together with the key id.
Payloads without that encoding pass through ``decode`` unchanged, so histories written before
encryption was turned on still read.

What Temporal keeps outside payloads is not encrypted: workflow ids (order ids), task queues,
and the search attributes (``workflows/search_attributes.py``: statuses, merchant ids, order
references, facilities, dates; never a name, an address or an e-mail).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class PayloadDecryptError(ValueError):
    """A payload marked encrypted that these keys cannot open (unknown key id, tampered)."""


class EncryptionCodec(PayloadCodec):
    """AES-GCM with the first of ``keys`` on encode; any of them, by key id, on decode."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        self.key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.key_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.key_id].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption (or by another codec): as it is
        raw_id = payload.metadata.get(KEY_ID)
        key_id = raw_id.decode(errors="replace") if raw_id is not None else None
        cipher = self._ciphers.get(key_id) if key_id is not None else None
        if cipher is None:
            raise PayloadDecryptError(
                f"payload encrypted with key id {key_id!r}, which PRINTFLOW_PAYLOAD_KEYS does not "
                f"hold (it holds {', '.join(repr(k) for k in self._ciphers)})"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise PayloadDecryptError(
                f"payload encrypted with key id {key_id!r} does not authenticate: "
                "another key under the same id, or the payload was altered"
            ) from None
        original = Payload()
        original.ParseFromString(plain)
        return original
