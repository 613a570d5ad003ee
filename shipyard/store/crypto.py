"""Encryption at rest for secrets (build arguments, build files, secret mounts): AES-256-GCM."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12


class NotOurKey(InvalidTag):
    """A sealed value this key does not open: another ``SHIPYARD_SECRET_KEY`` sealed it (a
    worker whose key is not the API's), or it was copied from another row. An ``InvalidTag``
    still, for callers that catch that."""


class SecretBox:
    """Seals JSON values. ``context`` (e.g. a build id) is bound as associated data, so a sealed
    value copied onto another row does not open there."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"shipyard secrets v1"
        ).derive(secret_key.encode())
        self._aead = AESGCM(key)
        self._mac_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"shipyard fingerprints v1"
        ).derive(secret_key.encode())

    def fingerprint(self, value: Any) -> str:
        """A keyed digest of a JSON value: equal values compare equal, and a low-entropy
        secret inside cannot be guessed from the stored digest without the key."""
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._mac_key, canonical, hashlib.sha256).hexdigest()

    def seal(self, value: Any, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        plaintext = json.dumps(value, separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> Any:
        if sealed[:1] != _VERSION:
            raise ValueError("unknown secret format")
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        try:
            plaintext = self._aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], context.encode())
        except InvalidTag:
            raise NotOurKey(
                "a sealed value does not open with this SHIPYARD_SECRET_KEY (not the API's?)"
            ) from None
        return json.loads(plaintext)
