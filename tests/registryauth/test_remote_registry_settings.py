"""A worker on another machine: SHIPYARD_REGISTRY + SHIPYARD_REGISTRY_AUTH=shipyard (no
password), the API's SHIPYARD_REGISTRY_LISTEN / SHIPYARD_PUBLIC_URL, and what a build's
namespace is allowed to reach for them (exactly the registry and the token endpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from shipyard.executors.runtime import registry_endpoints
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.registryauth import credentials, realm
from shipyard.registryauth.targets import build_target, own_target
from shipyard.sandbox.endpoints import Endpoint, Reach, plan
from shipyard.sandbox.network import BuildNetwork, Loopback
from shipyard.settings import Settings, SettingsError, load

KEY = SecretStr("k" * 43)


def settings(**values: object) -> Settings:
    return Settings(secret_key=KEY, **values)  # type: ignore[arg-type]


def test_defaults_are_todays_loopback_realm_and_bind_address() -> None:
    s = settings(port=8123)
    assert s.registry_auth == "basic" and s.registry_listen == "127.0.0.1"
    assert realm(s) == "http://127.0.0.1:8123/v1/registry/token"


def test_public_url_becomes_the_realm() -> None:
    s = settings(public_url="https://shipyard.internal:8443/")
    assert realm(s) == "https://shipyard.internal:8443/v1/registry/token"


@pytest.mark.parametrize("url", ["shipyard.internal:8000", "ftp://x", "http://x/api", "http://"])
def test_a_public_url_that_is_no_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SHIPYARD_PUBLIC_URL"):
        settings(public_url=url)


def test_registry_listen_must_include_loopback() -> None:
    assert settings(registry_listen="0.0.0.0").registry_listen == "0.0.0.0"
    with pytest.raises(ValueError, match="SHIPYARD_REGISTRY_LISTEN"):
        settings(registry_listen="10.0.0.5")


def test_shipyard_auth_needs_a_registry() -> None:
    with pytest.raises(ValueError, match="needs SHIPYARD_REGISTRY"):
        settings(registry_auth="shipyard")


@pytest.mark.parametrize(
    "extra",
    [{"registry_password": SecretStr("root")}, {"registry_username": "root"}],
)
def test_shipyard_auth_refuses_a_shared_password(extra: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="takes no SHIPYARD_REGISTRY_USERNAME/_PASSWORD"):
        settings(registry="api.internal:5000", registry_auth="shipyard", **extra)


def test_load_reports_the_refusal_as_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_REGISTRY", "api.internal:5000")
    monkeypatch.setenv("SHIPYARD_REGISTRY_AUTH", "shipyard")
    monkeypatch.setenv("SHIPYARD_REGISTRY_PASSWORD", "root")
    with pytest.raises(SettingsError) as caught:
        load()
    assert str(caught.value).startswith("SHIPYARD_REGISTRY_AUTH=shipyard takes no")


def test_shipyard_auth_pushes_with_per_build_credentials_of_the_project() -> None:
    s = settings(registry="api.internal:5000/pre", registry_auth="shipyard")
    own = own_target(s, None)
    assert own is not None and own.host == "api.internal:5000" and own.prefix == "pre"
    internal = credentials(s).verify(own.password or "")
    assert internal is not None and internal.kind == "internal"  # Shipyard's own checks
    per_build = build_target(s, None, own)
    assert per_build is not None
    target = per_build("proj", "b1")
    assert (target.host, target.prefix) == ("api.internal:5000", "pre")
    assert target.username != own.username and target.password
    # The API verifies it with the same secret key: a credential of build b1 of proj.
    credential = credentials(s).verify(target.password or "")
    assert credential is not None
    assert (credential.kind, credential.project_id, credential.build_id) == ("build", "proj", "b1")
    # Signed with another key (a worker with the wrong SHIPYARD_SECRET_KEY): refused.
    other = settings(registry="api.internal:5000", registry_auth="shipyard")
    other = other.model_copy(update={"secret_key": SecretStr("x" * 43)})
    assert credentials(other).verify(target.password or "") is None


def test_basic_external_registry_keeps_the_operators_credentials() -> None:
    s = settings(
        registry="reg.example:5000", registry_username="u", registry_password=SecretStr("p")
    )
    own = own_target(s, None)
    assert own is not None and (own.username, own.password) == ("u", "p")
    assert build_target(s, None, own) is None


def test_embedded_registry_binds_where_configured(tmp_path: Path) -> None:
    registry = EmbeddedRegistry(tmp_path, 5999, listen="0.0.0.0")
    registry._write_config()
    assert '"addr": "0.0.0.0:5999"' in registry.config_path.read_text()
    assert registry.target.host == "127.0.0.1:5999"  # this machine's clients: loopback
    v6 = EmbeddedRegistry(tmp_path, 5999, listen="::")
    v6._write_config()
    assert '"addr": "[::]:5999"' in v6.config_path.read_text()


# --- what a build's namespace may reach ---------------------------------------------------


def test_default_endpoints_are_the_two_loopback_ports_as_before() -> None:
    s = settings(port=8000, registry_port=5000)
    target = RegistryTarget(host="127.0.0.1:5000")
    reach = plan(registry_endpoints(s, target, embedded=True))
    assert reach == Reach(loopback_ports=(8000, 5000))


def test_a_remote_worker_reaches_exactly_the_registry_and_the_realm() -> None:
    s = settings(
        registry="api.internal:5000",
        registry_auth="shipyard",
        public_url="http://api.internal:8000",
        port=8000,
    )
    own = own_target(s, None)
    assert own is not None
    endpoints = registry_endpoints(s, own, embedded=False)
    assert endpoints == [Endpoint("api.internal", 8000), Endpoint("api.internal", 5000)]
    reach = plan(endpoints, resolve=lambda host, port: ["10.1.2.3"], is_local=lambda a: False)
    assert reach == Reach(remote=(("10.1.2.3", 8000), ("10.1.2.3", 5000)))


def test_a_remote_worker_on_loopback_uses_the_loopback_ports() -> None:
    s = settings(registry="127.0.0.1:5001", registry_auth="shipyard", port=8001)
    own = own_target(s, None)
    assert own is not None
    assert plan(registry_endpoints(s, own, embedded=False)) == Reach(loopback_ports=(8001, 5001))


def test_the_api_machines_own_builds_reach_the_public_realm_through_loopback() -> None:
    s = settings(public_url="http://10.0.0.5:8000", port=8000, registry_port=5000)
    target = RegistryTarget(host="127.0.0.1:5000")
    reach = plan(
        registry_endpoints(s, target, embedded=True),
        resolve=lambda host, port: [host],
        is_local=lambda address: address == "10.0.0.5",
    )
    assert reach == Reach(loopback_ports=(8000, 5000), local=(("10.0.0.5", 8000),))


def test_a_basic_external_registry_elsewhere_gets_no_allowance() -> None:
    s = settings(registry="reg.example:5000")
    own = own_target(s, None)
    assert own is not None
    assert registry_endpoints(s, own, embedded=False) == [Endpoint("127.0.0.1", s.port)]


def test_remote_endpoints_become_exact_accepts_with_the_connection_cap() -> None:
    net = BuildNetwork("abc", "k", Loopback((8000,)), remote=(("10.1.2.3", 5000),))
    net.host_ip = "10.213.0.5"
    rules = net._host_rules("-A", "-I")
    accepts = [r for r in rules if "10.1.2.3" in r]
    assert len(accepts) == 2
    assert "--dport 5000" in accepts[0] and "connlimit" in accepts[0]
    assert accepts[1].endswith("-d 10.1.2.3/32 -p tcp -m tcp --dport 5000 -j ACCEPT")
    # Removal flushes the build's chain with them.
    assert any(r.startswith("-F SY-") for r in net._host_rules("-D", "-D"))


def test_endpoint_parsing() -> None:
    assert Endpoint.parse("http://api:8000/v1/registry/token", 1) == Endpoint("api", 8000)
    assert Endpoint.parse("https://api/v1/registry/token", 1) == Endpoint("api", 443)
    assert Endpoint.parse("api:5000/prefix", 1) == Endpoint("api", 5000)
    assert Endpoint.parse("registry.example", 443) == Endpoint("registry.example", 443)


def test_a_value_sealed_with_another_key_says_so() -> None:
    from cryptography.exceptions import InvalidTag

    from shipyard.store.crypto import NotOurKey, SecretBox

    sealed = SecretBox("api key").seal({"a": 1}, "build-1")
    with pytest.raises(NotOurKey, match="SHIPYARD_SECRET_KEY") as caught:
        SecretBox("worker key").open(sealed, "build-1")
    assert isinstance(caught.value, InvalidTag)  # callers catching InvalidTag still do


def test_the_wrong_key_build_message_names_the_setting() -> None:
    from shipyard.executors.local import WRONG_KEY_MESSAGE

    assert "SHIPYARD_SECRET_KEY is not the API's" in WRONG_KEY_MESSAGE


def test_the_start_up_probe_flags_a_realm_other_than_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    from shipyard.registryauth import probe as probe_module

    challenge = 'Bearer realm="http://10.0.0.5:8000/v1/registry/token",service="shipyard-registry"'

    def fake_get(url: str, **_: object) -> httpx.Response:
        assert url == "http://api.internal:5000/v2/"
        return httpx.Response(401, headers={"www-authenticate": challenge})

    monkeypatch.setattr(probe_module.httpx, "get", fake_get)
    target = RegistryTarget(host="api.internal:5000", username="u", password="p")
    result = probe_module.probe(target, "http://127.0.0.1:8000/v1/registry/token")
    assert not result.ok and not result.refused
    assert "set SHIPYARD_PUBLIC_URL" in result.message
