from __future__ import annotations

import json

from shipyard.supply.labels import Origin
from shipyard.supply.provenance import BuildFacts, statement


def test_statement_names_source_commit_builder_args_and_bases() -> None:
    facts = BuildFacts(
        build_id="calm-sea-0001",
        builder_id="urn:shipyard:builder:abc",
        source_kind="git",
        origin=Origin("https://git.example/app.git", "c" * 40, 1_700_000_000),
        branch="main",
        dockerfile="/Dockerfile",
        build_args=("TOKEN", "VERSION"),
        secret_mounts=("npm",),
        base_images={
            "127.0.0.1:5000/shared/base:1": "sha256:" + "d" * 64,
            "localhost/shared/busybox:1": "id:" + "e" * 64,
        },
    )
    body = statement(facts, repository="127.0.0.1:5000/p/s", digest="sha256:" + "f" * 64)
    doc = json.loads(body)
    assert doc["subject"] == [{"name": "127.0.0.1:5000/p/s", "digest": {"sha256": "f" * 64}}]
    definition = doc["predicate"]["buildDefinition"]
    assert definition["resolvedDependencies"][0] == {
        "uri": "git+https://git.example/app.git",
        "digest": {"gitCommit": "c" * 40},
        "annotations": {"branch": "main"},
    }
    assert definition["externalParameters"]["buildArgs"] == ["TOKEN", "VERSION"]
    assert definition["externalParameters"]["secretMounts"] == ["npm"]
    uris = [d["uri"] for d in definition["resolvedDependencies"][1:]]
    assert uris == ["docker://127.0.0.1:5000/shared/base:1", "docker://localhost/shared/busybox:1"]
    assert doc["predicate"]["runDetails"]["builder"]["id"] == "urn:shipyard:builder:abc"
    assert statement(facts, repository="127.0.0.1:5000/p/s", digest="sha256:" + "f" * 64) == body
