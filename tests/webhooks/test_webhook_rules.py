"""Build-rule globs, signature schemes and payload parsing, without a server."""

from __future__ import annotations

import pytest

from shipyard.webhooks import events, rules
from shipyard.webhooks.signatures import Provider, hmac_hex, verify
from tests.helpers import webhook_payloads as wp


@pytest.mark.parametrize(
    ("rule", "branch", "matches"),
    [
        ("main", "main", True),
        ("main", "main2", False),
        ("feature/*", "feature/a", True),
        ("feature/*", "feature/a/b", True),  # * crosses "/"
        ("feature/*", "feature", False),
        ("release-?", "release-1", True),
        ("release-?", "release-10", False),
        ("*", "anything/at/all", True),
        ("a.b", "axb", False),  # only * and ? are special
        ("", "main", False),
    ],
)
def test_glob(rule: str, branch: str, matches: bool) -> None:
    assert rules.glob_matches(rule, branch) is matches


def test_signatures() -> None:
    body = b'{"a":1}'
    good = {"x-hub-signature-256": "sha256=" + hmac_hex("s3", body)}
    assert verify(Provider.GITHUB, good, body, "s3")
    assert not verify(Provider.GITHUB, good, body + b" ", "s3")
    assert not verify(Provider.GITHUB, {"x-hub-signature-256": hmac_hex("s3", body)}, body, "s3")
    assert verify(Provider.GITLAB, {"x-gitlab-token": "s3"}, body, "s3")
    assert not verify(Provider.GITLAB, {"x-gitlab-token": "s4"}, body, "s3")
    assert verify(Provider.GITEA, {"x-gitea-signature": hmac_hex("s3", body)}, body, "s3")
    assert verify(Provider.GITEA, {"x-forgejo-signature": hmac_hex("s3", body)}, body, "s3")
    assert not verify(Provider.GITEA, {}, body, "s3")


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_parse_each_provider() -> None:
    url = "https://git.example.com/o/app.git"
    a, b = "a" * 40, "b" * 40
    body = wp.encode(wp.github_push(url, "refs/heads/main", a, b, "msg"))
    push = events.parse(Provider.GITHUB, _lower(wp.github_headers("push", body, None)),
                        wp.github_push(url, "refs/heads/main", a, b, "msg"))  # fmt: skip
    assert isinstance(push, events.Push) and push.branch == "main" and push.head_message == "msg"
    assert url in push.repository_urls
    gl = events.parse(Provider.GITLAB, _lower(wp.gitlab_headers("Push Hook", None)),
                      wp.gitlab_push(url, "refs/heads/x", events.ZERO_SHA, b, "m"))  # fmt: skip
    assert isinstance(gl, events.Push) and gl.created and gl.default_branch == "main"
    mr = events.parse(Provider.GITLAB, _lower(wp.gitlab_headers("Merge Request Hook", None)),
                      wp.gitlab_merge_request(url, "update", 2, "topic", b, "m", oldrev=a))  # fmt: skip
    assert isinstance(mr, events.PullRequest) and mr.before == a and mr.action == "synchronize"
    assert mr.head_ref == "refs/merge-requests/2/head"
    gt = events.parse(Provider.GITEA, _lower(wp.gitea_headers("pull_request", b"", None)),
                      wp.gitea_pull_request(url, "synchronized", 4, "topic", b))  # fmt: skip
    assert (
        isinstance(gt, events.PullRequest) and gt.number == 4 and gt.head_ref == "refs/pull/4/head"
    )
    with pytest.raises(events.BadPayload):
        events.parse(Provider.GITHUB, {"x-github-event": "push"}, {"ref": "refs/heads/main"})


def test_delivery_ids() -> None:
    assert events.delivery_id(Provider.GITHUB, {"x-github-delivery": "d1"}, b"") == "d1"
    assert events.delivery_id(Provider.GITLAB, {"idempotency-key": "k", "x-gitlab-event-uuid": "u"},
                              b"") == "k"  # fmt: skip
    assert events.delivery_id(Provider.GITEA, {}, b"x").startswith("body-sha256:")
