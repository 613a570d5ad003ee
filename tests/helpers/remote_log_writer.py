"""A worker on another machine, as far as the API can tell: a separate process that claims a
build and writes its log one committed chunk at a time through the store, then concludes it.

``python -m tests.helpers.remote_log_writer URL BUILD_ID LINES INTERVAL_S``. Each line
carries the wall-clock time of its commit (``sent=<unix seconds>``), so a reader on this
machine can tell how long it took to see it.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from shipyard.builds.status import BuildStatus
from shipyard.store import builds as build_store
from shipyard.store import logs as log_store
from shipyard.store.db import make_engine, make_sessionmaker


def main(url: str, build_id: str, lines: int, interval_s: float) -> None:
    engine = make_engine(url, worker=True)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        attempt = build_store.claim(session, build_id, "remote-writer")
        session.commit()
    assert attempt is not None, "the build was not QUEUED"
    for seq in range(lines):
        time.sleep(interval_s)  # the tail is idle, waiting, when each line lands
        with sessions() as session:
            line = f"line {seq} sent={time.time():.6f}"
            log_store.append(session, build_id, attempt, seq, [(datetime.now(UTC), line)])
            session.commit()
    with sessions() as session:
        build_store.conclude(session, build_id, attempt, BuildStatus.SUCCESS, "written remotely")
        session.commit()
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
