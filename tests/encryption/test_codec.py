"""The payload codec on its own: encryption, plaintext, key ids, rotation, the key setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from runtime.settings import Settings, parse_payload_keys
from tests.helpers.keys import TEST_KEY_A, TEST_KEY_B, keys
from workflows.client import data_converter
from workflows.codec import ENCODING, KEY_ID, EncryptionCodec, PayloadDecryptError

SECRET = "Erika Mustermann, Unter den Linden 1, erika@example.com"


async def test_a_payload_is_encrypted_and_decrypts_to_the_original() -> None:
    converter = data_converter(keys(TEST_KEY_A))
    [payload] = await converter.encode([{"address": SECRET}])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID] == b"test-a"
    assert SECRET.encode() not in payload.SerializeToString()
    assert b"json" not in payload.SerializeToString()  # the original metadata is sealed too
    assert await converter.decode([payload], [dict]) == [{"address": SECRET}]


async def test_the_same_value_encrypts_differently_each_time() -> None:
    codec = EncryptionCodec(keys())
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    first, second = await codec.encode([original, original])
    assert first.data != second.data


async def test_payloads_that_are_not_encrypted_pass_through_only_for_operators() -> None:
    """The ``/codec`` endpoint's codec shows plaintext as it is; a worker's refuses it
    (tests/encryption/test_plaintext.py)."""
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    assert await EncryptionCodec(keys(), accept_plaintext=True).decode([plain]) == [plain]
    assert await EncryptionCodec(keys()).decode([plain]) != [plain]


async def test_an_unknown_key_id_is_a_clear_error() -> None:
    [sealed] = await EncryptionCodec(keys(TEST_KEY_B)).encode([Payload(data=b"x")])
    with pytest.raises(PayloadDecryptError, match="key id 'test-b'.*does not hold"):
        await EncryptionCodec(keys(TEST_KEY_A)).decode([sealed])


async def test_an_altered_payload_does_not_decrypt() -> None:
    codec = EncryptionCodec(keys())
    [sealed] = await codec.encode([Payload(data=b"x")])
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptError, match="does not authenticate"):
        await codec.decode([sealed])


async def test_rotation_the_first_key_encrypts_and_every_key_decrypts() -> None:
    [old] = await EncryptionCodec(keys(TEST_KEY_A)).encode([Payload(data=b"old")])
    rotated = EncryptionCodec(keys(f"{TEST_KEY_B},{TEST_KEY_A}"))
    [new] = await rotated.encode([Payload(data=b"new")])
    assert new.metadata[KEY_ID] == b"test-b"
    assert [p.data for p in await rotated.decode([old, new])] == [b"old", b"new"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("k1", "entry 1 is not 'id:base64key'"),
        ("k1:" + "A" * 43 + "=,:" + "A" * 43 + "=", "entry 2 is not 'id:base64key'"),
        ("k 1:" + "A" * 43 + "=", "entry 1 is not"),
        ("k1:not base64!", "key 'k1' is not base64"),
        ("k1:" + "A" * 22, "key 'k1' has 128 bits"),
        ("k1:" + "A" * 43 + "=,k1:" + "B" * 43 + "=", "key id 'k1' appears twice"),
    ],
)
def test_malformed_keys_are_refused_without_showing_the_key(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_payload_keys(value)
    assert "A" * 20 not in str(refused.value)
    with pytest.raises(ValidationError):
        Settings(payload_keys=value)


def test_keys_in_standard_or_url_safe_base64() -> None:
    key = bytes(range(250, 256)) * 5 + b"??"
    import base64

    standard = base64.b64encode(key).decode()
    url_safe = base64.urlsafe_b64encode(key).decode().rstrip("=")
    assert parse_payload_keys(f"a:{standard}, b:{url_safe}") == [("a", key), ("b", key)]


def test_no_keys_means_plain_payloads() -> None:
    assert Settings(payload_keys="").payload_key_list() == []
    assert data_converter(()).payload_codec is None
