"""Wires the embedded all-in-one: registry (embedded or external), buildah store, pipeline,
local executor. The registry lives exactly as long as the executor."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from shipyard.executors.base import Executor, NullExecutor
from shipyard.executors.local import LocalExecutor
from shipyard.pipeline.builder import Buildah, BuildahStore
from shipyard.pipeline.registry import EmbeddedRegistry, RegistryTarget
from shipyard.pipeline.run import Pipeline, PipelineSettings
from shipyard.registryauth import credentials, token_auth
from shipyard.settings import Settings
from shipyard.store.crypto import SecretBox


class LocalRuntime:
    """Executor facade that also owns the embedded registry's process."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], box: SecretBox) -> None:
        data = settings.data_dir
        self.embedded: EmbeddedRegistry | None = None
        if settings.registry:
            target = RegistryTarget.parse(
                settings.registry,
                insecure=settings.registry_insecure,
                username=settings.registry_username,
                password=settings.registry_password.get_secret_value()
                if settings.registry_password
                else None,
            )
        else:
            self.embedded = EmbeddedRegistry(
                data, settings.registry_port, auth=token_auth(settings)
            )
            # Shipyard's own identity (pushes, reuse checks) until each build pushes with the
            # credential of its project (credentials(settings).issue_build_credential).
            target = self.embedded.target_with(*credentials(settings).internal_credential())
        store = BuildahStore(root=data / "buildah" / "root", runroot=data / "buildah" / "runroot")
        # Two builds share one store (locked by containers/storage); the janitor must then only
        # remove the containers of the build it cleans up after.
        buildah = Buildah(
            store,
            exclusive_store=settings.max_concurrent_builds <= 1,
            pull_tls_verify=not target.insecure,
        )
        pipeline = Pipeline(
            PipelineSettings(
                work_root=data / "work",
                build_timeout_s=settings.build_timeout_s,
                git_timeout_s=settings.git_timeout_s,
                max_bundle_bytes=settings.max_bundle_bytes,
                bundle_timeout_s=settings.bundle_timeout_s,
                allow_private_urls=settings.allow_private_urls,
                network=settings.build_network,
            ),
            buildah,
            target,
        )
        self.registry = target
        self.pipeline = pipeline
        self.executor = LocalExecutor(
            sessions,
            box,
            pipeline,
            concurrency=settings.max_concurrent_builds,
            heartbeat_s=settings.heartbeat_s,
            lease_s=settings.lease_s,
        )

    def submit(self, build_id: str) -> None:
        self.executor.submit(build_id)

    def abort(self, build_id: str) -> None:
        self.executor.abort(build_id)

    def start(self) -> None:
        if self.embedded is not None:
            self.embedded.start()
        self.pipeline.clean_leftovers()
        self.executor.start()

    def stop(self) -> None:
        self.executor.stop()
        if self.embedded is not None:
            self.embedded.stop()


def executor_for(settings: Settings, sessions: sessionmaker[Session], box: SecretBox) -> Executor:
    if settings.executor == "none":
        return NullExecutor()
    if settings.executor == "local":
        return LocalRuntime(settings, sessions, box)
    raise ValueError(f"unknown SHIPYARD_EXECUTOR {settings.executor!r} (local | none)")
