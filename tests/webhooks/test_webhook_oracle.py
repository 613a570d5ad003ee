"""Hostile-tenant findings on ``POST /v1/webhooks/{provider}/{project}`` (no bearer token):

- an unknown project answered "no webhook secret is configured", a project with a secret
  "the delivery's signature does not match": which project ids exist (and have a webhook)
  could be probed. Every refusal is now the same 401, after the same work (an HMAC against a
  throwaway secret when there is none), and anonymous /metrics no longer labels refusals
  with their reason (``unknown-project`` vs ``bad-signature`` was the same oracle);
- deliveries were handled without bound (each a worker thread and up to 5 MiB of body):
  at most SHIPYARD_WEBHOOK_MAX_CONCURRENT (16) at once, 429 past it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.api.guards import slots
from shipyard.builds.errors import TooManyRequests
from shipyard.settings import Settings
from shipyard.webhooks import receive as receive_module
from tests.api.test_start_build_rules import assert_error
from tests.conftest import Factory
from tests.helpers import webhook_payloads as wp

BODY = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()


def refusal(client: TestClient, project: str, secret: str | None) -> tuple[int, Any]:
    r = client.post(
        f"/v1/webhooks/github/{project}",
        content=BODY,
        headers={"Authorization": "", **wp.github_headers("ping", BODY, secret)},
    )
    return r.status_code, r.json()


def test_unknown_project_and_bad_signature_look_the_same(
    client: TestClient, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_secret = factory.project("Hooked")
    secret = factory.ok("POST", f"/v1/projects/{with_secret}/webhook")["secret"]
    without_secret = factory.project("Plain")
    checks: list[str] = []
    real_verify = receive_module.verify

    def counting(provider: Any, headers: Any, body: bytes, key: str) -> bool:
        checks.append(key)
        return real_verify(provider, headers, body, key)

    monkeypatch.setattr(receive_module, "verify", counting)
    answers = {
        "unknown project": refusal(client, "no-such-project", "guess"),
        "unknown project, unsigned": refusal(client, "no-such-project", None),
        "no secret": refusal(client, without_secret, "guess"),
        "bad signature": refusal(client, with_secret, "guess"),
        "unsigned": refusal(client, with_secret, None),
    }
    first = next(iter(answers.values()))
    assert first[0] == 401 and first[1]["error"]["id"] == "unauthenticated"
    for what, answer in answers.items():
        assert answer == first, what
    assert len(checks) == len(answers)  # one HMAC check each: the same work
    assert refusal(client, with_secret, secret)[0] == 200  # the right one still works

    # Anonymous metrics count refusals by provider only; the admin sees the reasons.
    anonymous = client.get("/metrics", headers={"Authorization": ""}).text
    assert 'shipyard_webhook_rejected_total{provider="github"} 5.0' in anonymous
    assert "unknown-project" not in anonymous and "bad-signature" not in anonymous
    detail = client.get("/metrics").text
    assert 'reason="unknown-project"' in detail and 'reason="bad-signature"' in detail


def test_concurrent_deliveries_are_capped(
    client: TestClient, settings: Settings, factory: Factory
) -> None:
    assert Settings.model_fields["webhook_max_concurrent"].default == 16
    settings.webhook_max_concurrent = 2
    project = factory.project("Hooked")
    secret = factory.ok("POST", f"/v1/projects/{project}/webhook")["secret"]
    pool = slots(client.app, "webhooks")
    pool.acquire("all", 2, TooManyRequests("x"))
    pool.acquire("all", 2, TooManyRequests("x"))
    try:
        r = client.post(
            f"/v1/webhooks/github/{project}",
            content=BODY,
            headers={"Authorization": "", **wp.github_headers("ping", BODY, secret)},
        )
        error = assert_error(r, 429, "SHIPYARD_WEBHOOK_MAX_CONCURRENT")
        assert error["id"] == "rate-limited" and r.headers["Retry-After"].isdigit()
    finally:
        pool.release("all")
        pool.release("all")
    assert refusal(client, project, secret)[0] == 200
    assert refusal(client, project, "wrong")[0] == 401
    assert pool.held("all") == 0  # given back after success and refusal alike
