"""Payload keys for tests only: fixed, public, never to be used anywhere else.

The whole suite runs with ``TEST_PAYLOAD_KEYS`` (tests/conftest.py sets
``PRINTFLOW_PAYLOAD_KEYS`` unless the environment already has it), so every workflow test, API
test and real process encrypts its payloads. ``TEST_KEY_B`` is a second key for rotation tests.
"""

from __future__ import annotations

import base64

from runtime.settings import parse_payload_keys

TEST_KEY_A = "test-a:" + base64.b64encode(b"printflow TEST key A, not secret").decode()
TEST_KEY_B = "test-b:" + base64.b64encode(b"printflow TEST key B, not secret").decode()
TEST_PAYLOAD_KEYS = TEST_KEY_A


def keys(value: str = TEST_PAYLOAD_KEYS) -> list[tuple[str, bytes]]:
    return parse_payload_keys(value)
