"""A cache reset empties the project's store with the project held like a sweep: a build
that starts meanwhile waits for it (emptied under a starting build, the base image it found
stamped as imported was gone half-read: "base image … cannot be used: importing settings")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.sandbox import sandbox as sandbox_module
from shipyard.sandbox.cgroups import Limits
from shipyard.sandbox.network import NetworkMode
from shipyard.sandbox.sandbox import Sandbox, SandboxSettings
from shipyard.sandbox.users import user_name

PROJECT = "p1"


def test_builds_of_the_project_wait_while_its_store_is_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Sandbox(
        SandboxSettings(
            root=tmp_path, instance_id="t", network=NetworkMode.HOST,
            limits=Limits(memory_bytes=1 << 30, pids=100, cpu_shares=1024), use_cgroups=False,
        )
    )  # fmt: skip
    name = user_name("t", PROJECT)
    dirs = object()
    held_while_emptied: list[bool] = []

    def empty_store(got: Any) -> None:
        assert got is dirs
        held_while_emptied.append(name in box._sweeping)

    monkeypatch.setattr(sandbox_module, "empty_store", empty_store)
    monkeypatch.setattr(box, "has_store", lambda project_id: project_id == PROJECT)
    monkeypatch.setattr(box, "_user_dirs", lambda project_id: (object(), dirs))

    box.reset_cache(PROJECT)
    assert held_while_emptied == [True]
    assert name not in box._sweeping  # and builds may start again

    # A build running throughout: the reset waits for it, gives up, and empties nothing.
    box._active[name] += 1
    exclusive = Sandbox.exclusive

    def impatient(self: Sandbox, project_id: str, timeout_s: float = 0.0) -> Any:
        return exclusive(self, project_id, timeout_s=0.5)

    monkeypatch.setattr(Sandbox, "exclusive", impatient)
    box.reset_cache(PROJECT)
    assert held_while_emptied == [True]
