"""A collection that cannot take the push gate (a fleet's pushes held it past its wait) or
loses it leaves the registry for the next run, says why in its report, and still does the
rest of the run (log retention, uploads)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from shipyard.gc.collector import GarbageCollector
from shipyard.gc.retention import Policy
from shipyard.pipeline.push_gate import GateLost, GateUnavailable
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.store.db import make_engine, make_sessionmaker, migrate


class _Gate:
    """Cannot be taken (``GateUnavailable``) or is lost once taken (``GateLost``)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @contextlib.contextmanager
    def pushing(self, on_wait: Callable[[], None] | None = None, **_: object) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[Callable[[], None]]:
        if isinstance(self.error, GateUnavailable):
            raise self.error

        def confirm() -> None:
            raise self.error

        yield confirm


class _Embedded:
    def __init__(self, storage_dir: Path) -> None:
        self.storage_dir = storage_dir


@pytest.mark.parametrize(
    "error",
    [
        GateUnavailable("pushes held the fleet's push gate for over 600 s"),
        GateLost("garbage collection"),
    ],
)
def test_the_registry_waits_for_the_next_run_and_the_rest_goes_on(
    tmp_path: Path, error: Exception
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    collector = GarbageCollector(
        make_sessionmaker(engine),
        None,
        Policy(keep_last=1, keep_days=0),
        gate=_Gate(error),
        registry=RegistryTarget("127.0.0.1:9", username="shipyard", password="x"),
        embedded=cast(EmbeddedRegistry, _Embedded(tmp_path)),
        store_budget_bytes=0,
        log_retention=lambda dry_run: "the logs of 0 build(s) removed",
        upload_sweep=lambda: 2,
    )
    report = collector.run()
    assert report.errors == [str(error)]
    assert report.logs == "the logs of 0 build(s) removed"
    assert report.uploads_removed == 2
    engine.dispose()
