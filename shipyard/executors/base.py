"""The one small interface between the API and whatever runs builds."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def submit(self, build_id: str) -> None:
        """A QUEUED build row was committed; run it when a slot is free."""

    def abort(self, build_id: str) -> None:
        """The build's abort flag was committed; stop it now if it runs here."""

    def prepare(self, project_id: str) -> None:
        """A project was created: get its build sandbox ready in the background (its user,
        disk, store and base images), so its first build does not wait for that."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class NullExecutor:
    """Runs nothing: builds stay QUEUED (API-only mode, and tests of the API alone)."""

    def submit(self, build_id: str) -> None:
        return None

    def abort(self, build_id: str) -> None:
        return None

    def prepare(self, project_id: str) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None
