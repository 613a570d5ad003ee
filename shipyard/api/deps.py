"""Request-scoped dependencies: the app's state, a DB session, the caller."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from shipyard.api.auth import (
    Principal,
    admin_principal,
    authenticate,
    bearer,
    is_admin_token,
)
from shipyard.api.tail_wakeups import TailWakeups
from shipyard.executors.base import Executor
from shipyard.settings import Settings
from shipyard.store.crypto import SecretBox


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    box: SecretBox
    executor: Executor
    admin_token: str
    # Set when Shipyard shuts down (after running builds were drained): live log streams end.
    closing: threading.Event = field(default_factory=threading.Event)
    # PostgreSQL only: live tails wait on NOTIFY instead of polling (None: they poll).
    wakeups: TailWakeups | None = None

    def end_streams(self) -> None:
        """Live log streams end after the lines stored so far."""
        self.closing.set()
        if self.wakeups is not None:
            self.wakeups.wake_all()


# Dependencies are ``async`` so they run on the event loop: a sync dependency costs a
# thread-pool round trip each (bench: six hops a request before this, two after).


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.shipyard
    return state


State = Annotated[AppState, Depends(app_state)]


async def db_session(state: State) -> AsyncIterator[Session]:
    session = state.sessions()
    try:
        yield session
    finally:
        if session.in_transaction() and not _is_sqlite(session):
            await run_in_threadpool(session.close)  # a rollback: network I/O
        else:
            # SQLite's rollback of a reading connection is a no-op in memory: done here, on
            # the loop, so a session never waits for a worker thread to give its connection
            # back (issue 11: 8 threads waiting for the connection a closing session held).
            session.close()


def _is_sqlite(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "sqlite"


DB = Annotated[Session, Depends(db_session)]


async def caller(request: Request, state: State, session: DB) -> Principal:
    token = bearer(request.headers.get("authorization"))
    if token is not None and is_admin_token(token, state.admin_token):
        return admin_principal()
    # Stored tokens need the database: off the event loop.
    return await run_in_threadpool(_authenticate, session, token, state.admin_token)


def _authenticate(session: Session, token: str | None, admin_token: str) -> Principal:
    """The token lookup, then the connection goes back to the pool: the endpoint runs in
    another worker thread later, and a connection held across that wait is what starved
    the pool (issue 11)."""
    try:
        return authenticate(session, token, admin_token)
    finally:
        session.close()


Caller = Annotated[Principal, Depends(caller)]
