"""The registry layer cache's naming, when a build reads it, and the buildah flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.pipeline.build_cache import RegistryCache, configured
from shipyard.pipeline.builder import Buildah, BuildahStore, BuildSpec, stores_repository
from shipyard.pipeline.registry import RegistryTarget
from shipyard.registryauth.scopes import Grant, allowed_actions

REGISTRY = RegistryTarget(host="127.0.0.1:5000", prefix="ship")


def _store(root: Path, names: list[str]) -> Path:
    images = root / "overlay-images"
    images.mkdir(parents=True)
    (images / "images.json").write_text(json.dumps([{"id": "abc", "names": names}]))
    return root


def test_the_cache_repository_is_inside_the_projects_own_namespace() -> None:
    cache = RegistryCache()
    plan = cache.plan(REGISTRY, "proj", "web", store_root=Path("/nonexistent"),
                      image_repository="127.0.0.1:5000/ship/proj/web", use_cache=True)  # fmt: skip
    assert plan.to == plan.source == "127.0.0.1:5000/ship/proj/web/cache"
    named = RegistryCache("buildcache/{service}").plan(
        REGISTRY, "proj", "web", store_root=Path("/nonexistent"),
        image_repository="127.0.0.1:5000/ship/proj/web", use_cache=True,
    )  # fmt: skip
    assert named.to == "127.0.0.1:5000/ship/proj/buildcache/web"


@pytest.mark.parametrize(
    "template",
    ["{service}", "cache", "{project}/{service}", "../{service}", "{service}/Cache", "{service}//x",
     "{service}/{service}-{x}"],
)  # fmt: skip
def test_templates_that_could_share_or_escape_a_cache_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        RegistryCache(template)


def test_only_a_store_without_an_image_of_the_service_uses_the_registry(tmp_path: Path) -> None:
    repository = "127.0.0.1:5000/ship/proj/web"
    cache_repository = f"{repository}/cache"
    cache = RegistryCache()

    def plan(root: Path, use_cache: bool = True) -> tuple[str | None, str | None]:
        got = cache.plan(REGISTRY, "proj", "web", store_root=root,
                         image_repository=repository, use_cache=use_cache)  # fmt: skip
        return got.to, got.source

    empty = tmp_path / "empty"
    assert plan(empty) == (cache_repository, cache_repository)
    # Another service's image (a prefix of this name) does not make the store warm.
    other = _store(tmp_path / "other", [f"{repository}-api:b1", "localhost/base:1"])
    assert plan(other) == (cache_repository, cache_repository)
    # A warm store: neither read nor pushed (buildah would push every hit again).
    warm = _store(tmp_path / "warm", [f"{repository}:joyous-view-6290"])
    assert stores_repository(warm, repository)
    assert plan(warm) == (None, None)
    # ``useCache: false`` on a fresh worker: nothing read, everything built and pushed.
    assert plan(empty, use_cache=False) == (cache_repository, None)


def test_bud_argv_carries_the_cache_flags(tmp_path: Path) -> None:
    buildah = Buildah(BuildahStore(tmp_path / "root", tmp_path / "runroot"))
    ctx = tmp_path / "ctx"
    spec = BuildSpec(context_dir=ctx, dockerfile=ctx / "Dockerfile", display_dockerfile="D",
                     tag="localhost/a:1", tmpdir=tmp_path / "tmp", cache_to="r/p/s/cache",
                     cache_from="r/p/s/cache")  # fmt: skip
    argv = buildah.bud_argv(spec, tmp_path / "iid")
    assert argv[argv.index("--cache-to") + 1] == "r/p/s/cache"
    assert argv[argv.index("--cache-from") + 1] == "r/p/s/cache"
    assert argv.index("--cache-from") < argv.index("--")
    no_cache = BuildSpec(context_dir=ctx, dockerfile=ctx / "Dockerfile", display_dockerfile="D",
                         tag="localhost/a:1", tmpdir=tmp_path / "tmp", layers=False,
                         cache_to="r/p/s/cache", cache_from="r/p/s/cache")  # fmt: skip
    argv = buildah.bud_argv(no_cache, tmp_path / "iid")
    assert "--cache-from" not in argv and "--cache-to" in argv
    with pytest.raises(ValueError):
        BuildSpec(context_dir=ctx, dockerfile=ctx / "Dockerfile", display_dockerfile="D",
                  tag="localhost/a:1", tmpdir=tmp_path / "tmp", cache_from="--all")  # fmt: skip


def test_another_projects_build_credential_gets_nothing_on_a_cache_repository() -> None:
    own = Grant("build:b", pull=frozenset({"b"}), push=frozenset({"b"}))
    assert allowed_actions(own, "b/web/cache", ["shared"]) == {"pull", "push"}
    assert allowed_actions(own, "a/web/cache", ["shared"]) == frozenset()


def test_on_by_default_only_where_workers_have_stores_of_their_own() -> None:
    assert configured(None, "local", "{service}/cache") is None
    assert configured(None, "none", "{service}/cache") is None
    assert configured(None, "procrastinate", "{service}/cache") == RegistryCache()
    assert configured(True, "local", "c/{service}") == RegistryCache("c/{service}")
    assert configured(False, "procrastinate", "{service}/cache") is None


def test_cache_entry_ages_read_from_go_timestamps() -> None:
    from datetime import UTC, datetime

    from shipyard.gc.build_cache import created_at

    got = created_at("2026-12-04T17:44:10.123456789Z")
    assert got == datetime(2026, 12, 4, 17, 44, 10, 123456, tzinfo=UTC)
    assert created_at("2026-12-04T17:44:10Z") == datetime(2026, 12, 4, 17, 44, 10, tzinfo=UTC)
    assert created_at("yesterday") is None and created_at(None) is None
