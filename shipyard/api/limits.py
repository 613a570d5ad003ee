"""Request bodies larger than the largest valid build request are refused early (413)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api.errors import error_response
from shipyard.builds.request import MAX_SECRETS_TOTAL_BYTES

# Secrets are sent base64-encoded (4/3) inside JSON; leave room for the rest of the body.
MAX_BODY_BYTES = MAX_SECRETS_TOTAL_BYTES * 4 // 3 + 1024 * 1024


def is_upload(scope: Scope) -> bool:
    """``POST /v1/projects/{p}/uploads``: a streamed archive with its own, larger cap
    (``SHIPYARD_MAX_UPLOAD_BYTES``, checked while it is written to disk)."""
    path = str(scope.get("path", ""))
    return scope.get("method") == "POST" and path.startswith("/v1/") and path.endswith("/uploads")


class LimitBody:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_upload(scope):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)  # the server stops at Content-Length
            return
        # Chunked: read it all here (bounded), then replay it to the app.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # disconnect: let the app see it
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is larger than {self.max_bytes} bytes"
        await error_response(413, message, slug="payload-too-large")(scope, receive, send)
