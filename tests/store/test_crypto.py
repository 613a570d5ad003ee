"""Secrets at rest: AES-GCM, bound to the row they belong to."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from shipyard.store.crypto import SecretBox


def test_round_trip_and_no_plaintext() -> None:
    box = SecretBox("key-1")
    sealed = box.seal({"A": "very-secret-value"}, "build:x")
    assert b"very-secret-value" not in sealed
    assert box.open(sealed, "build:x") == {"A": "very-secret-value"}
    assert box.seal({"A": 1}, "c") != box.seal({"A": 1}, "c")  # fresh nonce each time


def test_wrong_context_or_key_fails() -> None:
    sealed = SecretBox("key-1").seal({"A": "v"}, "build:x")
    with pytest.raises(InvalidTag):
        SecretBox("key-1").open(sealed, "build:y")
    with pytest.raises(InvalidTag):
        SecretBox("key-2").open(sealed, "build:x")
