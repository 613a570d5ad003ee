"""One dispatch pass for any executor: claim the builds the fairness policy lets start, then
tell every build still queued why it waits.

``Dispatcher.dispatch(worker_id, free)`` is the whole interface: the local executor calls it
whenever a slot frees or a build is queued (and once a second); a scale-out worker calls it
when it is woken with free slots. A pass is one short transaction under the dispatch lock
(``shipyard.store.queue``): one snapshot, then claims in the policy's order, each one a
conditional UPDATE that re-checks the limits, so claimers on many machines never take the
same build and never exceed a limit together.

Queue notices: a queued build's log gets ``Queued: position P of N; <what it waits on>``
when it starts waiting and whenever what it waits on changes — a free slot, its project's
limit, its service — not when only its position, a count or the build ahead of it changes
(so a long queue costs a line per build, not a line per build per start). What the last
notice said is remembered here and, for builds this process has not seen yet, read back
from the build's newest log line, so several dispatchers (or a restart) do not repeat it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.fairness import (
    QUEUED_PREFIX,
    Limits,
    Place,
    Running,
    plan,
    slot_reason,
    waits_on,
)
from shipyard.store import queue

log = logging.getLogger(__name__)

# Claims tried per pass beyond the free slots: a lost race (another worker took the build,
# or an abort landed) moves on to the next build instead of waiting for the next pass.
_RACE_RETRIES = 8


@dataclass(frozen=True)
class Claim:
    build_id: str
    attempt: int
    queued_at: datetime  # when the build was created: queue wait = started - queued_at


class Dispatcher:
    def __init__(
        self, sessions: sessionmaker[Session], limits: Limits, *, explain_every_s: float = 0.5
    ) -> None:
        self._sessions = sessions
        self.limits = limits
        # Notices are written at most this often: a burst of claims (one pass each) does
        # not re-plan the whole queue for its notices every time.
        self._explain_every_s = explain_every_s
        self._explained = -float("inf")
        self._said: dict[str, str] = {}  # build id → what its last notice said it waits on

    def dispatch(self, worker_id: str, free: int) -> list[Claim]:
        """Claim up to ``free`` builds for ``worker_id`` (0: only refresh the notices).
        The caller must start a run for every claim returned."""
        due = time.monotonic() - self._explained >= self._explain_every_s
        if free <= 0 and not due:
            return []  # nothing to claim and the notices are recent: no database round trip
        with self._sessions() as session:
            queue.lock_dispatch(session)
            # The heads of each service's queue are all a claim can pick from.
            heads = self.limits.service_max or self.limits.global_max
            waiting, running = queue.snapshot(session, per_service=heads) if free > 0 else ([], [])
            # No queued build at all (the heads are empty) and no notice to retire: an idle
            # queue costs one snapshot a pass.
            idle = free > 0 and not waiting and not self._said
            claims: list[Claim] = []
            misses = 0
            while len(claims) < free and misses <= _RACE_RETRIES:
                place = next(
                    (p for p in plan(waiting, running, self.limits) if p.blocked_by is None),
                    None,
                )
                if place is None:
                    break
                build = place.build
                waiting = [b for b in waiting if b.build_id != build.build_id]
                attempt = queue.claim_within(session, build, worker_id, self.limits)
                if attempt is None:  # aborted meanwhile, or taken by a claimer we cannot see
                    misses += 1
                    continue
                running = [*running, Running(build.build_id, build.project_id, build.workload_id)]
                self._said.pop(build.build_id, None)
                claims.append(Claim(build.build_id, attempt, build.created_at))
            # The claims are committed first: a failing notice must not undo them.
            session.commit()
            if not due or idle:
                return claims
            self._explained = time.monotonic()
            try:
                self._explain(session, free - len(claims))
                session.commit()
            except Exception:  # notices help people; they must never stop builds starting
                session.rollback()
                self._said.clear()
                log.exception("writing queue notices failed")
        return claims

    def _explain(self, session: Session, free: int) -> None:
        """A notice for each queued build whose wait changed (``free``: slots this pass left
        unused; a build that may start and arrived after the claims gets no notice: the next
        pass, which it woke, claims it)."""
        queue.lock_dispatch(session)
        waiting, running = queue.snapshot(session)
        if not waiting and not self._said:
            return
        places = plan(waiting, running, self.limits)
        reasons = {p.build.build_id: self._reason(p, len(running)) for p in places}
        unknown = [b for b in reasons if b not in self._said]
        for build_id, line in queue.last_lines(session, unknown).items():
            if line.startswith(QUEUED_PREFIX) and "; " in line:
                self._said[build_id] = waits_on(line.split("; ", 1)[1])
        for place in places:
            if place.blocked_by is None and free > 0:
                free -= 1
                continue
            build_id = place.build.build_id
            reason = reasons[build_id]
            if self._said.get(build_id) == waits_on(reason):
                continue
            if queue.append_notice(session, build_id, place.notice(reason)):
                self._said[build_id] = waits_on(reason)
        for gone in set(self._said) - set(reasons):
            del self._said[gone]

    def _reason(self, place: Place, running: int) -> str:
        # Not blocked by a limit but still queued after the claims: the free slots (this
        # worker's, or the global ones) went to builds ahead of it.
        return place.blocked_by or slot_reason(running, self.limits)
