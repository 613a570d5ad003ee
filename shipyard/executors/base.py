"""The one small interface between the API and whatever runs builds."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shipyard.health.checks import Check


class Executor(Protocol):
    def submit(self, build_id: str) -> None:
        """A QUEUED build row was committed; run it when a slot is free."""

    def abort(self, build_id: str) -> None:
        """The build's abort flag was committed; stop it now if it runs here."""

    def prepare(self, project_id: str) -> None:
        """A project was created: get its build sandbox ready in the background (its user,
        disk, store and base images), so its first build does not wait for that."""

    def start(self) -> None: ...

    def drain(self, grace_s: float) -> None:
        """Shutting down: claim nothing more, give running builds ``grace_s`` to finish, then
        stop the rest through the abort path and conclude them. Returns when none runs."""

    def stop(self) -> None: ...


@runtime_checkable
class ResourceHooks(Protocol):
    """Optional executor hooks for deletes and cache resets. Kept out of ``Executor`` until
    every executor implements them: the API calls them through ``release`` and
    ``reset_cache`` below, which skip an executor that lacks them (nothing to free)."""

    def release(self, project_id: str) -> None:
        """A project was deleted (its rows are gone, its builds were told to abort): free its
        build sandbox (user, disk, store, layer cache). Images stay in the registry, whose
        deletes are disabled. Called after the commit; must not block the request."""

    def reset_cache(self, project_id: str, workload_id: int) -> None:
        """``DELETE …/build-cache`` of workload ``workload_id`` (``Workload.id``): drop the
        layer cache its builds use. A project's builds share one layer store, so this drops
        the project's layer cache: every workload of the project builds its layers afresh
        next time. (Whole-build reuse is turned off by the API itself.) Must not block."""


@runtime_checkable
class HealthChecks(Protocol):
    """Optional: what the executor needs to run builds, for ``GET /readyz``. An executor
    without it (API only) adds no checks."""

    def health(self) -> list[Check]:
        """Blocking (may probe a process over the network): call it off the event loop."""


def health(executor: Executor) -> list[Check]:
    return executor.health() if isinstance(executor, HealthChecks) else []


def release(executor: Executor, project_id: str) -> None:
    if isinstance(executor, ResourceHooks):
        executor.release(project_id)


def reset_cache(executor: Executor, project_id: str, workload_id: int) -> None:
    if isinstance(executor, ResourceHooks):
        executor.reset_cache(project_id, workload_id)


class NullExecutor:
    """Runs nothing: builds stay QUEUED (API-only mode, and tests of the API alone)."""

    def submit(self, build_id: str) -> None:
        return None

    def abort(self, build_id: str) -> None:
        return None

    def prepare(self, project_id: str) -> None:
        return None

    def release(self, project_id: str) -> None:
        return None

    def reset_cache(self, project_id: str, workload_id: int) -> None:
        return None

    def start(self) -> None:
        return None

    def drain(self, grace_s: float) -> None:
        return None

    def stop(self) -> None:
        return None
