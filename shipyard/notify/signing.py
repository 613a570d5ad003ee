"""How a receiver checks a notification came from Shipyard: ``X-Shipyard-Signature-256:
sha256=<hex HMAC-SHA256 of the raw body with the endpoint's secret>`` (GitHub's scheme, so
existing verifiers work). The body carries ``sentAt`` and the delivery id, so a receiver can
refuse stale or repeated ones."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Shipyard-Signature-256"
EVENT_HEADER = "X-Shipyard-Event"
DELIVERY_HEADER = "X-Shipyard-Delivery"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
