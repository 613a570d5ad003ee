"""The background thread that sends notifications.

It reads the build table (the only truth, whichever process ran the build): every poll it
(1) adds a pending row per (endpoint, build, event) for builds that started or concluded
since the endpoint was made, and (2) sends the rows that are due. A failed attempt (no
answer, or not 2xx) is recorded and retried after ``backoff · 2^(n-1)`` seconds, up to
``max_attempts``; an address the policy refuses fails at once. Rows are claimed with a
conditional UPDATE of ``next_at``, so two Shipyard processes never send the same attempt.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.notify import endpoints, send
from shipyard.notify.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from shipyard.pipeline.errors import SourceError
from shipyard.store.crypto import SecretBox
from shipyard.store.models import Build, NotificationDelivery, NotificationEndpoint, Workload

log = logging.getLogger(__name__)

STARTED, CONCLUDED = "build.started", "build.concluded"
# Builds older than this when first seen are not announced (e.g. after a long outage).
LOOKBACK = timedelta(days=1)
CLAIM_S = 60.0  # a claimed row is retried by anyone after this (a worker died mid-send)
BATCH = 20
MAX_ERROR_CHARS = 300

# (build) -> the build's JSON as the API shows it.
BuildShape = Callable[[Build], dict[str, Any]]


@dataclass(frozen=True)
class NotifySettings:
    allow_private: bool
    allowed_networks: tuple[str, ...] = ()
    max_attempts: int = 6
    backoff_s: float = 2.0
    timeout_s: float = 10.0
    poll_s: float = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


class Notifier:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        settings: NotifySettings,
        build_shape: BuildShape,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._settings = settings
        self._shape = build_shape
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.timeout_s + 5)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the loop must outlive a database hiccup
                log.exception("notification round failed")
            self._wake.wait(self._settings.poll_s)
            self._wake.clear()

    def run_once(self) -> int:
        """One round: enqueue what is new, send what is due. Returns attempts made."""
        self._enqueue()
        sent = 0
        for delivery_id in self._due():
            if self._stop.is_set():
                break
            if self._claim(delivery_id):
                self._send(delivery_id)
                sent += 1
        return sent

    def _enqueue(self) -> None:
        since = _now() - LOOKBACK
        with self._sessions() as session:
            pairs = session.execute(
                select(NotificationEndpoint, Build)
                .join(Workload, Workload.project_id == NotificationEndpoint.project_id)
                .join(Build, Build.workload_id == Workload.id)
                .where(Build.created_at >= since)
            ).all()
            wanted: list[tuple[int, str, str]] = []
            for endpoint, build in pairs:
                if build.concluded_at is not None and build.concluded_at >= endpoint.created_at:
                    wanted.append((endpoint.id, build.id, CONCLUDED))
                if (endpoint.on_start and build.started_at is not None
                        and build.started_at >= endpoint.created_at):  # fmt: skip
                    wanted.append((endpoint.id, build.id, STARTED))
            if not wanted:
                return
            existing = set(
                session.execute(
                    select(
                        NotificationDelivery.endpoint_id,
                        NotificationDelivery.build_id,
                        NotificationDelivery.event,
                    ).where(NotificationDelivery.created_at >= since - LOOKBACK)
                ).all()
            )
            for endpoint_id, build_id, event in wanted:
                if (endpoint_id, build_id, event) in existing:
                    continue
                now = _now()
                session.add(
                    NotificationDelivery(
                        endpoint_id=endpoint_id,
                        build_id=build_id,
                        event=event,
                        state="pending",
                        next_at=now,
                        created_at=now,
                        attempts=[],
                    )
                )
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()  # another process made it

    def _due(self) -> list[int]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(NotificationDelivery.id)
                    .where(
                        NotificationDelivery.state == "pending",
                        NotificationDelivery.next_at <= _now(),
                    )
                    .order_by(NotificationDelivery.next_at)
                    .limit(BATCH)
                ).all()
            )

    def _claim(self, delivery_id: int) -> bool:
        with self._sessions() as session:
            row = session.get(NotificationDelivery, delivery_id)
            if row is None or row.state != "pending":
                return False
            claimed = session.execute(
                update(NotificationDelivery)
                .where(
                    and_(
                        NotificationDelivery.id == delivery_id,
                        NotificationDelivery.next_at == row.next_at,
                        NotificationDelivery.state == "pending",
                    )
                )
                .values(next_at=_now() + timedelta(seconds=CLAIM_S))
            )
            session.commit()
            return bool(claimed.rowcount)  # type: ignore[attr-defined]

    def _send(self, delivery_id: int) -> None:
        with self._sessions() as session:
            row = session.get(NotificationDelivery, delivery_id)
            assert row is not None
            endpoint = session.get(NotificationEndpoint, row.endpoint_id)
            build = session.get(Build, row.build_id)
            if endpoint is None or build is None:
                return
            workload = session.get(Workload, build.workload_id)
            assert workload is not None
            secret = str(self._box.open(endpoint.secret_enc, endpoints.secret_context(endpoint.id)))
            attempt_id = f"{row.id}-{len(row.attempts) + 1}"
            payload = {
                "id": attempt_id,
                "event": row.event,
                "sentAt": _now().isoformat().replace("+00:00", "Z"),
                "projectId": workload.project_id,
                "entity": workload.entity,
                ("serviceId" if workload.entity == "service" else "jobId"): workload.slug,
                "build": self._shape(build),
            }
            url = endpoint.url
            row_event = row.event
            attempts = list(row.attempts)
        body = json.dumps(payload, separators=(",", ":")).encode()
        record, delivered, permanent = self._post(url, secret, body, row_event=row_event,
                                                  attempt_id=attempt_id)  # fmt: skip
        attempts.append(record)
        with self._sessions() as session:
            row = session.get(NotificationDelivery, delivery_id)
            assert row is not None
            row.attempts = attempts
            if delivered:
                row.state = "delivered"
            elif permanent or len(attempts) >= self._settings.max_attempts:
                row.state = "failed"
            else:
                delay = self._settings.backoff_s * (2 ** (len(attempts) - 1))
                row.next_at = _now() + timedelta(seconds=delay)
            session.commit()

    def _post(
        self, url: str, secret: str, body: bytes, *, row_event: str, attempt_id: str
    ) -> tuple[dict[str, Any], bool, bool]:
        """(attempt record, delivered, failed for good)."""
        started = time.monotonic()
        record: dict[str, Any] = {"at": _now().isoformat().replace("+00:00", "Z")}
        try:
            pin = endpoints.check_url(url, allow_private=self._settings.allow_private,
                                      allowed_networks=self._settings.allowed_networks)  # fmt: skip
        except SourceError as exc:
            record["error"] = f"refused: {exc.message}"
            return record, False, True
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Shipyard-Notifications/1",
            SIGNATURE_HEADER: sign(secret, body),
            EVENT_HEADER: row_event,
            DELIVERY_HEADER: attempt_id or str(uuid.uuid4()),
        }
        try:
            # Connected to the checked address only, no redirects (notify.send).
            status = send.post(
                url, content=body, headers=headers, timeout_s=self._settings.timeout_s, pin=pin
            )
        except httpx.HTTPError as exc:
            record["error"] = (f"{type(exc).__name__}: {exc}")[:MAX_ERROR_CHARS]
            record["durationMs"] = int((time.monotonic() - started) * 1000)
            return record, False, False
        record["status"] = status
        record["durationMs"] = int((time.monotonic() - started) * 1000)
        return record, 200 <= status < 300, False
