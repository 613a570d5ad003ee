"""``upload_context`` (sync and async) streams the chunks to the upload endpoint, and
``start_service_build(upload_id=…)`` sends the upload variant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx

from tests.client.test_client_unit import BASE, Server, build_json

UPLOAD = {"id": "upload-" + "a" * 24, "size": 6, "digest": "sha256:x", "createdAt": "t",
          "expiresAt": "t"}  # fmt: skip


def answer(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/uploads"):
        return httpx.Response(200, json={"data": UPLOAD})
    return httpx.Response(200, json={"data": build_json()})


def test_sync_upload_streams_chunks_then_builds_the_upload() -> None:
    server = Server(answer)
    with server.client() as sy:
        assert sy.upload_context("demo", iter([b"abc", b"def"])) == UPLOAD
        sy.start_service_build("demo", "web", upload_id=UPLOAD["id"], branch="main")
    upload, start = server.requests
    assert str(upload.url) == f"{BASE}/v1/projects/demo/uploads"
    assert upload.content == b"abcdef" and upload.headers["Content-Type"] == "application/gzip"
    assert json.loads(start.content) == {"uploadId": UPLOAD["id"], "branch": "main"}


def test_async_upload_streams_an_async_iterator() -> None:
    server = Server(answer)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async def go() -> dict[str, object]:
        async with server.async_client() as sy:
            return await sy.upload_context("demo", chunks())

    assert asyncio.run(go()) == UPLOAD
    assert server.last.content == b"abcdef"
