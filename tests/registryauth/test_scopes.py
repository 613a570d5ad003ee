"""The scope rules: a pure function, tested as one."""

from __future__ import annotations

import pytest

from shipyard.registryauth.credentials import Credential
from shipyard.registryauth.principals import api_token_grant, credential_grant
from shipyard.registryauth.scopes import Access, Grant, grant_access, parse_scope

SHARED = ("shared",)
BUILD_A = credential_grant(Credential("build", "a", "b-1", 2**40))
PULL_A = credential_grant(Credential("pull", "a", None, 2**40))
INTERNAL = credential_grant(Credential("internal", None, None, None))
ADMIN = api_token_grant("admin", ["Project > Services > General > Read",
                                  "Project > Services > Deployment > Deploy Build"], None)  # fmt: skip


def granted(grant: Grant, *scopes: str) -> dict[str, tuple[str, ...]]:
    requested = [a for s in scopes for a in parse_scope(s)]
    return {f"{a.type}:{a.name}": a.actions for a in grant_access(grant, requested, SHARED)}


def test_parse_scope() -> None:
    assert parse_scope("repository:a/web:pull,push") == [
        Access("repository", "a/web", ("pull", "push"))
    ]
    assert parse_scope("repository:a/x:pull registry:catalog:*") == [
        Access("repository", "a/x", ("pull",)),
        Access("registry", "catalog", ("*",)),
    ]
    assert parse_scope("nonsense") == []


def test_build_credential_pushes_and_pulls_its_project_and_pulls_shared() -> None:
    got = granted(
        BUILD_A,
        "repository:a/web:pull,push",
        "repository:a/deep/name:push",
        "repository:shared/base:pull,push",
        "repository:b/web:pull,push",
    )
    assert got == {
        "repository:a/web": ("pull", "push"),
        "repository:a/deep/name": ("push",),
        "repository:shared/base": ("pull",),
    }


@pytest.mark.parametrize(
    "scope",
    [
        "repository:a/web:delete",
        "repository:a/web:*",
        "registry:catalog:*",
        "repository:a:pull",  # a bare project name is no repository of the project
        "repository:ab/web:pull",  # prefix of another project's name
        "repository:a/../b/web:pull",
        "repository:A/web:pull",
        "repository(plugin):a/web:pull",
    ],
)
def test_never_granted_to_a_build(scope: str) -> None:
    assert granted(BUILD_A, scope) == {}


def test_pull_credential_only_pulls() -> None:
    got = granted(PULL_A, "repository:a/web:pull,push", "repository:shared/x:pull,push")
    assert got == {"repository:a/web": ("pull",), "repository:shared/x": ("pull",)}


def test_a_project_named_like_the_shared_prefix_cannot_push_there() -> None:
    build = credential_grant(Credential("build", "shared", "b-2", 2**40))
    assert granted(build, "repository:shared/base:pull,push") == {
        "repository:shared/base": ("pull",)
    }


def test_api_tokens_follow_their_permissions_and_project() -> None:
    reader = api_token_grant("r", ["Project > Jobs > General > Read"], "a")
    assert granted(reader, "repository:a/web:pull,push", "repository:shared/b:pull") == {
        "repository:a/web": ("pull",),
        "repository:shared/b": ("pull",),
    }
    deployer = api_token_grant("d", ["Project > Services > Deployment > Deploy Build"], "a")
    assert granted(deployer, "repository:a/web:pull,push", "repository:shared/b:pull") == {
        "repository:a/web": ("push",)
    }
    nothing = api_token_grant("n", ["Project > Projects > Manage > Read"], None)
    assert granted(nothing, "repository:a/web:pull,push") == {}


def test_admin_token_everything_but_delete_and_catalog() -> None:
    got = granted(
        ADMIN,
        "repository:b/web:pull,push,delete,*",
        "repository:shared/base:push",
        "registry:catalog:*",
    )
    assert got == {"repository:b/web": ("pull", "push"), "repository:shared/base": ("push",)}


def test_internal_identity_gets_everything() -> None:
    got = granted(INTERNAL, "repository:b/web:pull,push,delete", "registry:catalog:*")
    assert got == {"repository:b/web": ("delete", "pull", "push"), "registry:catalog": ("*",)}


def test_configured_shared_prefixes() -> None:
    requested = parse_scope("repository:team/base/img:pull repository:shared/x:pull")
    got = grant_access(BUILD_A, requested, ("team/base",))
    assert got == [Access("repository", "team/base/img", ("pull",))]
