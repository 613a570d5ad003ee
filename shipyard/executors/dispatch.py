"""One dispatch pass for any executor: claim the builds the fairness policy lets start, then
tell every build still queued why it waits.

``Dispatcher.dispatch(worker_id, free)`` is the whole interface: the local executor calls it
whenever a slot frees or a build is queued (and once a second); a scale-out worker calls it
when it is woken with free slots. Each claim is its own short transaction under the
dispatch lock (``shipyard.store.queue``), so claimers on many machines never take the same
build and never exceed a limit together.

Queue notices: a queued build's log gets ``Queued: position P of N; <what it waits on>``
when it starts waiting and whenever what it waits on changes (not when only its position
moves). The last notice written is remembered here and, for builds this process has not
seen yet, read back from the build's newest log line, so several dispatchers (or a
restart) do not repeat it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from shipyard.builds.fairness import QUEUED_PREFIX, Limits, Place, plan, slot_reason
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
    def __init__(self, sessions: sessionmaker[Session], limits: Limits) -> None:
        self._sessions = sessions
        self.limits = limits
        self._said: dict[str, str] = {}  # build id → the reason its last notice gave

    def dispatch(self, worker_id: str, free: int) -> list[Claim]:
        """Claim up to ``free`` builds for ``worker_id`` (0: only refresh the notices).
        The caller must start a run for every claim returned."""
        claims: list[Claim] = []
        misses = 0
        while len(claims) < free and misses <= _RACE_RETRIES:
            with self._sessions() as session:
                queue.lock_dispatch(session)
                waiting, running = queue.snapshot(session)
                place = next(
                    (p for p in plan(waiting, running, self.limits) if p.blocked_by is None),
                    None,
                )
                attempt = None
                if place is not None:
                    attempt = queue.claim_within(session, place.build, worker_id, self.limits)
                session.commit()
            if place is None:
                break
            if attempt is None:
                misses += 1
                continue
            self._said.pop(place.build.build_id, None)
            claims.append(Claim(place.build.build_id, attempt, place.build.created_at))
        try:
            self._explain(free - len(claims))
        except Exception:  # notices help people; they must never stop builds starting
            log.exception("writing queue notices failed")
        return claims

    def _explain(self, free: int) -> None:
        """``free``: slots this pass left unused. A build that may start and arrived after
        the claims gets no notice: the next pass (it woke us) claims it."""
        with self._sessions() as session:
            queue.lock_dispatch(session)
            waiting, running = queue.snapshot(session)
            places = plan(waiting, running, self.limits)
            reasons = {p.build.build_id: self._reason(p, len(running)) for p in places}
            unknown = [b for b in reasons if b not in self._said]
            for build_id, line in queue.last_lines(session, unknown).items():
                if line.startswith(QUEUED_PREFIX) and "; " in line:
                    self._said[build_id] = line.split("; ", 1)[1]
            for place in places:
                if place.blocked_by is None and free > 0:
                    free -= 1
                    continue
                build_id = place.build.build_id
                reason = reasons[build_id]
                if self._said.get(build_id) == reason:
                    continue
                if queue.append_notice(session, build_id, place.notice(reason)):
                    self._said[build_id] = reason
            session.commit()
        for gone in set(self._said) - set(reasons):
            del self._said[gone]

    def _reason(self, place: Place, running: int) -> str:
        # Not blocked by a limit but still queued after the claims: the free slots (this
        # worker's, or the global ones) went to builds ahead of it.
        return place.blocked_by or slot_reason(running, self.limits)
