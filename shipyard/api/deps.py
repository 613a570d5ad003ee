"""Request-scoped dependencies: the app's state, a DB session, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from shipyard.api.auth import Principal, authenticate, bearer
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


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.shipyard
    return state


State = Annotated[AppState, Depends(app_state)]


def db_session(state: State) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(db_session)]


def caller(request: Request, state: State, session: DB) -> Principal:
    return authenticate(session, bearer(request.headers.get("authorization")), state.admin_token)


Caller = Annotated[Principal, Depends(caller)]
