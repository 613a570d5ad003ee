"""One inbound delivery, start to end: proof, payload, replay check, the build rules per
candidate service or job, builds started, and the record of it all.

Runs in a worker thread (it may fetch into the mirror). The delivery row is committed first
(its unique (project, provider, delivery id) is the replay guard: a second copy of a
delivery finds it and does nothing), each build in its own transaction, then the results.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds import service as build_service
from shipyard.builds.errors import ShipyardError
from shipyard.builds.refs import is_valid_branch
from shipyard.builds.request import BuildRequest, SourceKind, SourceSpec
from shipyard.builds.status import BuildStatus
from shipyard.pipeline.errors import PipelineError
from shipyard.pipeline.mirror import MirrorStore, normalise_url, push_diff
from shipyard.pipeline.remote_policy import check_remote
from shipyard.store import builds as build_store
from shipyard.store import webhooks as webhook_store
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Build, Project, WebhookDelivery, Workload
from shipyard.webhooks import rules, secret
from shipyard.webhooks.events import (
    ZERO_SHA,
    BadPayload,
    Event,
    Ignored,
    Ping,
    PullRequest,
    Push,
    delivery_id,
    event_name,
    parse,
)
from shipyard.webhooks.signatures import Provider, missing_proof, verify

# One answer for every refusal (docs/webhooks.md): which of them it was goes to the counter.
REFUSED = (
    "the delivery's signature or token is missing or does not match this project's webhook "
    "secret (the project must exist and have one: POST /v1/projects/{p}/webhook)"
)
# Checked when a project has no secret, so the refusal costs what a wrong signature does.
_DECOY = secrets.token_urlsafe(32)


class Rejected(Exception):
    """401: no secret configured, no proof, or a wrong one. Nothing is recorded."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # counter label: no-secret | unsigned | bad-signature


@dataclass(frozen=True)
class WebhookSettings:
    box: SecretBox
    mirrors: MirrorStore | None
    allow_private_urls: bool
    allowed_networks: tuple[str, ...] = ()
    allowed_local_roots: tuple[Path, ...] = ()
    git_timeout_s: float = 120.0
    supersede_queued: bool = False
    max_queued: int | None = None  # SHIPYARD_MAX_QUEUED_BUILDS_PER_PROJECT


@dataclass
class Received:
    delivery: WebhookDelivery
    duplicate: bool = False
    started: list[str] = field(default_factory=list)


def receive(
    sessions: sessionmaker[Session],
    settings: WebhookSettings,
    provider: Provider,
    project_id: str,
    headers: Mapping[str, str],
    body: bytes,
    submit: Callable[[str], None],
) -> Received:
    """Raises ``Rejected`` (401) and ``BadPayload`` (400). Every refusal gives the same 401
    message after the same work (the project and secret looked up, an HMAC made and compared,
    against a throwaway secret when there is none): the unauthenticated endpoint is no oracle
    of which projects exist or have a webhook secret. Only the counter's label differs."""
    with sessions() as session:
        known = session.get(Project, project_id) is not None
        expected = secret.current(session, settings.box, project_id)
    proven = verify(provider, headers, body, expected if expected is not None else _DECOY)
    if expected is None or not proven:
        if expected is None:
            reason = "no-secret" if known else "unknown-project"
        elif missing_proof(provider, headers):
            reason = "unsigned"
        else:
            reason = "bad-signature"
        raise Rejected(REFUSED, reason)
    event = parse(provider, headers, _json(body))
    with sessions() as session:
        row = _claim(session, provider, project_id, headers, body, event)
        if row is None:
            existing = webhook_store.delivery(
                session, project_id, provider.value, delivery_id(provider, headers, body)
            )
            assert existing is not None
            session.expunge(existing)
            return Received(existing, duplicate=True)
        if isinstance(event, Ping):
            row.state, row.note = "done", "ping answered"
        elif isinstance(event, Ignored):
            row.state, row.note = "ignored", event.reason
        else:
            return _evaluate(session, settings, provider, row, event, submit)
        session.commit()
        session.refresh(row)
        session.expunge(row)
        return Received(row)


def _json(body: bytes) -> Any:
    text = body.decode("utf-8", "replace")
    # GitHub and Gitea may send application/x-www-form-urlencoded: payload=<json>.
    if text.startswith("payload="):
        text = parse_qs(text).get("payload", [""])[0]
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadPayload("the body is not JSON") from exc


def _claim(
    session: Session,
    provider: Provider,
    project_id: str,
    headers: Mapping[str, str],
    body: bytes,
    event: Event,
) -> WebhookDelivery | None:
    """Insert and commit the delivery's row; None if it was already there (a replay)."""
    row = WebhookDelivery(
        project_id=project_id,
        provider=provider.value,
        delivery_id=delivery_id(provider, headers, body),
        event=getattr(event, "event", "") or event_name(provider, headers) or "unknown",
        action=getattr(event, "action", None),
        repository=next(iter(getattr(event, "repository_urls", ())), None),
        received_at=datetime.now(UTC),
        state="processing",
        results=[],
    )
    if isinstance(event, Push):
        row.ref, row.before, row.after = event.ref, event.before, event.after
    elif isinstance(event, PullRequest):
        row.ref, row.before, row.after = event.head_ref, event.before, event.head_sha
        row.pull_request_id = event.number
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return row


def _candidate(workload: Workload) -> rules.Candidate:
    return rules.Candidate(
        entity=workload.entity,
        slug=workload.slug,
        kind=workload.kind,
        branch=workload.vcs_branch,
        spec=workload.spec or {},
        path_ignore_rules=list(workload.path_ignore_rules or []),
        is_allow_list=workload.is_allow_list,
    )


def _evaluate(
    session: Session,
    settings: WebhookSettings,
    provider: Provider,
    row: WebhookDelivery,
    event: Push | PullRequest,
    submit: Callable[[str], None],
) -> Received:
    wanted = {normalise_url(url) for url in event.repository_urls}
    workloads = [
        w
        for w in webhook_store.project_workloads(session, row.project_id)
        if w.vcs_url and normalise_url(w.vcs_url) in wanted
    ]
    received = Received(row)
    if not workloads:
        row.state = "done"
        row.note = f"no service or job of this project builds {row.repository or 'this repository'}"
        session.commit()
        return _detached(session, received)
    diff = _LazyDiff(settings, row.project_id, event)
    results: list[dict[str, Any]] = []
    to_start: list[Workload] = []
    for workload in workloads:
        candidate = _candidate(workload)
        decision = rules.decide_ref(candidate, event)
        if decision.build:
            diff.url = diff.url or build_service.repository_url(settings.box, workload)[0]
            decision = rules.decide_content(candidate, diff)
        entry: dict[str, Any] = {"entity": workload.entity, "id": workload.slug}
        if decision.build:
            to_start.append(workload)
            entry["outcome"] = "started"
        else:
            entry.update(outcome="skipped", reason=decision.reason)
        results.append(entry)
    row.diff_basis = diff.basis
    trigger = {
        "type": "webhook",
        "deliveryId": row.delivery_id,
        "provider": provider.value,
        "event": row.event,
    }
    for workload, entry in zip(
        to_start, [e for e in results if e["outcome"] == "started"], strict=True
    ):
        try:
            build = _start(session, settings, workload, event, trigger)
        except (ShipyardError, PipelineError) as exc:
            session.rollback()
            entry.update(outcome="skipped", reason=f"could not start a build: {exc}")
            continue
        entry["buildId"] = build.id
        received.started.append(build.id)
        submit(build.id)
    row.results = results
    row.state = "done"
    session.add(row)
    session.commit()
    return _detached(session, received)


def _detached(session: Session, received: Received) -> Received:
    session.refresh(received.delivery)
    session.expunge(received.delivery)
    return received


def _start(
    session: Session,
    settings: WebhookSettings,
    workload: Workload,
    event: Push | PullRequest,
    trigger: dict[str, Any],
) -> Build:
    if isinstance(event, PullRequest):
        branch = event.head_branch if is_valid_branch(event.head_branch) else None
        source = SourceSpec(SourceKind.GIT, sha=event.head_sha, branch=branch,
                            pull_request_id=event.number)  # fmt: skip
    else:
        source = SourceSpec(SourceKind.GIT, sha=event.after, branch=event.branch)
    if settings.supersede_queued:
        _supersede(session, workload)
    build, _created = build_service.start(
        session,
        settings.box,
        workload,
        BuildRequest(source=source),
        trigger=trigger,
        max_queued=settings.max_queued,
    )
    session.commit()
    return build


def _supersede(session: Session, workload: Workload) -> None:
    """Queued builds of the workload that a webhook started end ABORTED: a newer push wins."""
    queued = session.scalars(
        select(Build).where(Build.workload_id == workload.id, Build.status == BuildStatus.QUEUED)
    ).all()
    for build in queued:
        if build.trigger and build.trigger.get("type") == "webhook":
            build_store.conclude_if_waiting(
                session, build.id, BuildStatus.ABORTED, "Superseded by a newer push"
            )
    session.commit()


class _LazyDiff:
    """The delivery's net diff and head message, read from the project's mirror once, the
    first time a candidate's rules need them."""

    def __init__(self, settings: WebhookSettings, project_id: str, event: Push | PullRequest):
        self._settings = settings
        self._project_id = project_id
        self._event = event
        self._value: rules.Diff | None = None
        self.url: str | None = None  # the repository URL to fetch (credentials included)

    @property
    def basis(self) -> str | None:
        return None if self._value is None else self._value.basis

    def __call__(self) -> rules.Diff:
        if self._value is None:
            self._value = self._read()
        return self._value

    def _read(self) -> rules.Diff:
        event = self._event
        fallback = event.head_message
        if self.url is None:
            return rules.Diff(None, fallback, "no repository URL: every path counts")
        s = self._settings
        if isinstance(event, Push):
            before, after, ref = event.before, event.after, event.ref
            base = event.default_branch
        else:
            before, after, ref = event.before or ZERO_SHA, event.head_sha, event.head_ref
            base = event.base_branch or None
        try:
            pin = check_remote(self.url, allow_private=s.allow_private_urls,
                               allowed_networks=s.allowed_networks)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="shipyard-mirror-") as scratch:
                mirrors = s.mirrors or MirrorStore(Path(scratch))
                got = push_diff(
                    self.url,
                    mirrors.path(self._project_id, self.url),
                    before=before, after=after, ref=ref, base_branch=base,
                    timeout_s=s.git_timeout_s, allowed_local_roots=s.allowed_local_roots,
                    pin=pin,
                )  # fmt: skip
        except PipelineError as exc:
            return rules.Diff(None, fallback, f"could not read the repository ({exc}): "
                              "every path counts")  # fmt: skip
        return rules.Diff(got.paths, got.head_message or fallback, got.basis)
