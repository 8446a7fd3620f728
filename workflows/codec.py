"""Payload encryption: every payload printflow exchanges with Temporal is AES-GCM encrypted.

``PRINTFLOW_PAYLOAD_KEYS`` is ``id:base64key,...`` (``settings.parse_payload_keys``): 256-bit
keys, the first encrypts, all of them decrypt, so a key is rotated by putting the new one first
and keeping the old ones as long as histories written with them are read (replays, the Web UI).

An encrypted payload has the metadata ``encoding: binary/encrypted`` and
``encryption-key-id: <id>``; its data is a 12-byte nonce followed by the AES-GCM ciphertext of
the original payload (metadata and data, serialized), authenticated together with the key id.

A payload without that encoding is plaintext: anyone who reaches Temporal's frontend can send
one (a signal, an Update) without the keys. ``decode`` does not pass it on: it hands the
converter a payload of the encoding ``binary/refused-plaintext`` instead, which no converter
reads, so the SDK drops such a signal, rejects such an Update, fails such a query, and the
workflow goes on as if it had never come. (Raising instead would fail the workflow task on
every attempt: one plaintext signal would stop the order for good.) The operators' ``/codec``
endpoint builds its codec with ``accept_plaintext=True``: the Web UI shows plaintext as it is.

What Temporal keeps outside payloads is not encrypted: workflow ids (order ids), task queues,
and the search attributes (``workflows/search_attributes.py``: statuses, merchant ids, order
references, facilities, dates; never a name, an address or an e-mail).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

log = logging.getLogger("printflow.codec")

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
# What ``decode`` makes of a payload that was not encrypted: no payload converter knows it.
REFUSED_ENCODING = b"binary/refused-plaintext"


class PayloadDecryptError(ValueError):
    """A payload marked encrypted that these keys cannot open (unknown key id, tampered)."""


def refuse_plaintext(payload: Payload) -> Payload:
    """The stand-in for a plaintext payload (see the module doc); logged, never its data."""
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace")[:64]
    log.warning("refused a payload that is not encrypted (encoding %r)", encoding)
    return Payload(metadata={"encoding": REFUSED_ENCODING})


class EncryptionCodec(PayloadCodec):
    """AES-GCM with the first of ``keys`` on encode; any of them, by key id, on decode."""

    def __init__(
        self, keys: Sequence[tuple[str, bytes]], *, accept_plaintext: bool = False
    ) -> None:
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        self.key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.accept_plaintext = accept_plaintext

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
            return payload if self.accept_plaintext else refuse_plaintext(payload)
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
