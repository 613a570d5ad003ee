"""One build, start to end: source → context → buildah bud → push. Knows nothing of the
database: the executor hands in a ``BuildJob`` and a ``Reporter`` and writes the outcome."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from shipyard.builds.relevant_commit import PathRules
from shipyard.builds.request import BuildRequest, SourceKind
from shipyard.builds.status import BuildStatus
from shipyard.pipeline import context as build_context
from shipyard.pipeline import stage_cache
from shipyard.pipeline.build_cache import CachePlan, RegistryCache
from shipyard.pipeline.builder import (
    Buildah,
    BuildSpec,
    remote_digest,
    remote_image_exists,
    stored_image_id,
    write_authfile,
)
from shipyard.pipeline.errors import PipelineError, TimedOut
from shipyard.pipeline.mirror import MirrorStore, fetch_via_mirror
from shipyard.pipeline.push_gate import Gate, PushGate
from shipyard.pipeline.registry import RegistryTarget
from shipyard.pipeline.registry_tags import add_tags, image_tags
from shipyard.pipeline.remote_policy import check_remote
from shipyard.pipeline.source_bundle import extract_archive, fetch_bundle
from shipyard.pipeline.source_git import (
    CheckoutLimits,
    FetchedSource,
    fetch_source,
    list_remote_head,
)
from shipyard.sandbox.dockerfile import (
    SECRET_KEY_ARG,
    DockerfilePlan,
    check_dockerfile,
    check_triggers,
    onbuild_triggers,
    stage_args,
    with_args_key,
    with_labels,
    with_secret_key,
)
from shipyard.sandbox.sandbox import BuildSandbox, Sandbox, SandboxRequest
from shipyard.supply.attach import Attacher, Attachments, SbomJob
from shipyard.supply.labels import Origin, newest_mtime, public_url
from shipyard.supply.provenance import BuildFacts
from shipyard.uploads import store as uploads


@dataclass(frozen=True)
class BuildJob:
    build_id: str
    attempt: int
    project_id: str
    workload_slug: str
    repository_url: str | None
    request: BuildRequest
    use_cache: bool
    path_rules: PathRules | None
    # A keyed digest of the secret mounts' values (None without any): secret-mount steps
    # are cached per value (``sandbox.dockerfile.with_secret_key``).
    secrets_key: str | None = None
    sandbox: SandboxRequest | None = None  # the service's narrowing of the operator's sandbox
    default_branch: str | None = None  # builds of it are also tagged :latest
    include_git_folder: bool = False  # buildConfiguration.includeGitFolder
    full_clone: bool = False  # buildConfiguration.fullGitClone
    # The project's registry host -> (username, password) for private base images.
    pull_credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Outcome:
    image: str  # repository@digest: pullable, immutable
    tag: str
    digest: str
    reused_from: str | None = None  # id of the earlier identical build whose image this is
    # What each base image reference resolved to ("sha256:…" manifest digest, or "id:…" for a
    # shared local image); reuse requires them unchanged.
    base_images: Mapping[str, str] = field(default_factory=dict)
    # Manifest digests of the SBOM and provenance artifacts attached to the image.
    sbom_digest: str | None = None
    provenance_digest: str | None = None


_GC_WAIT = "Waiting for the registry's garbage collection to finish before pushing"

# Given a resolved commit, an earlier identical build's outcome (or None).
ReuseLookup = Callable[[str], Outcome | None]


class Reporter(Protocol):
    def stage(self, status: BuildStatus) -> None: ...

    def resolved(self, sha: str | None, branch: str | None) -> None: ...

    def line(self, text: str) -> None: ...

    def metrics(self, samples: Mapping[str, list[tuple[str, float]]]) -> None: ...


@dataclass(frozen=True)
class PipelineSettings:
    work_root: Path
    build_timeout_s: float
    git_timeout_s: float
    max_bundle_bytes: int
    bundle_timeout_s: float
    allow_private_urls: bool
    pull_tls_verify: bool = True
    allowed_local_roots: tuple[Path, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    checkout_limits: CheckoutLimits = field(default_factory=CheckoutLimits)
    push_stall_timeout_s: float | None = None
    # Persistent per-project git mirrors (shipyard.pipeline.mirror); None = fetch afresh.
    mirror_root: Path | None = None
    # The layer cache across workers (a cache repository per service); None = off.
    build_cache: RegistryCache | None = None
    # Uploaded contexts (``shipyard.uploads``): where they are and their extracted cap.
    data_dir: Path | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    # Supply chain: SBOM + provenance attached to every image (``shipyard.supply``).
    supply_chain: bool = True
    # Unchanged earlier stages taken whole from the store (``pipeline.stage_cache``).
    stage_cache: bool = True
    builder_id: str = "urn:shipyard:builder"


# The registry target a build pushes (and pulls base images) with: its own project's
# short-lived credential, never Shipyard's own identity. Arguments: project id, build id.
BuildTarget = Callable[[str, str], RegistryTarget]


def _shifted(plan: DockerfilePlan, inserted_after: dict[int, str]) -> DockerfilePlan:
    """``plan`` with its secret-RUN line numbers moved down by the lines ``with_args_key``
    inserted before them (one per stage whose FROM line comes earlier)."""
    lines = tuple(
        n + sum(1 for from_line in inserted_after if from_line < n) for n in plan.secret_run_lines
    )
    return dataclasses.replace(plan, secret_run_lines=lines)


def _identity(reference: str, inspected: Mapping[str, object]) -> str:
    """A shared local image by its id (its copy in each project's store keeps it), a
    registry image by its manifest digest."""
    if reference.startswith("localhost/"):
        return f"id:{inspected.get('FromImageID', '')}"
    return str(inspected.get("FromImageDigest", ""))


_DOING = {
    BuildStatus.CLONING: "fetching the source",
    BuildStatus.BUILDING: "building",
    BuildStatus.UPLOADING: "pushing the image",
}


class _Watched:
    """A reporter whose lines the sandbox also sees (to name the cap a build hit)."""

    def __init__(self, report: Reporter, watch: Callable[[str], None]) -> None:
        self._report, self._watch = report, watch
        self.doing = "fetching the source"  # for messages: "… while <doing>"

    def stage(self, status: BuildStatus) -> None:
        self.doing = _DOING.get(status, self.doing)
        self._report.stage(status)

    def resolved(self, sha: str | None, branch: str | None) -> None:
        self._report.resolved(sha, branch)

    def line(self, text: str) -> None:
        self._watch(text)
        self._report.line(text)

    def metrics(self, samples: Mapping[str, list[tuple[str, float]]]) -> None:
        self._report.metrics(samples)


def _record_stages(buildah: Buildah, to_record: list[tuple[str, str]]) -> list[str]:
    """Name each stage image in the store for the stage cache; what to log if one fails."""
    said = []
    for image_id, name in to_record:
        if not buildah.tag(image_id, name):
            said.append(f"Warning: stage cache: could not record image {image_id[:12]}")
    return said


class Pipeline:
    def __init__(
        self,
        settings: PipelineSettings,
        sandbox: Sandbox,
        registry: RegistryTarget,
        build_target: BuildTarget | None = None,
        fingerprint: Callable[[object], str] | None = None,
        push_gate: Gate | None = None,
    ) -> None:
        # A keyed digest (SecretBox.fingerprint): cache-key lines hold no build-arg value.
        self.fingerprint = fingerprint
        self.settings = settings
        self.sandbox = sandbox
        self.registry = registry  # Shipyard's own access (reuse checks)
        self.build_target = build_target or (lambda _project, _build: registry)
        # Garbage collection of the registry holds pushes back (shipyard.gc): this process's
        # own, or a scale-out fleet's (executors.procrastinate.push_gate).
        self.push_gate: Gate = push_gate or PushGate()

    def run(
        self,
        job: BuildJob,
        report: Reporter,
        cancel: threading.Event,
        reuse: ReuseLookup | None = None,
    ) -> Outcome:
        """Raises ``PipelineError`` (user-facing message), ``TimedOut`` or ``Cancelled``.

        ``reuse``: when the commit can be known without fetching it (a sha, or a branch tip
        by ``git ls-remote``) and an identical earlier build's image is still in the registry,
        that image is the outcome and nothing is fetched or built."""
        deadline = time.monotonic() + self.settings.build_timeout_s
        key = f"{job.build_id}-{job.attempt}"
        # Root-only scratch for the server's own steps (the reuse check's auth file).
        scratch = self.settings.work_root / key
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True, mode=0o700)
        try:
            report.stage(BuildStatus.CLONING)
            if reuse is not None and job.use_cache:
                reused = self._try_reuse(job, report, cancel, scratch, deadline, reuse)
                if reused is not None:
                    return reused
            with self.sandbox.for_build(job.project_id, key, job.sandbox) as box:
                report.line(box.describe())
                box.start_sampling()
                watched = _Watched(report, box.watch)
                try:
                    return self._run(job, watched, cancel, box, deadline)
                except PipelineError as exc:
                    # The kernel's cap, not buildah's "exit status 137", is the cause.
                    if (limit := box.limit_message(watched.doing)) is not None:
                        raise PipelineError(limit) from exc
                    raise
                finally:
                    report.metrics({k: list(v) for k, v in box.samples.items()})
        except TimedOut as exc:
            if time.monotonic() < deadline:
                raise  # one step's own limit (e.g. git), named in its message
            raise TimedOut(
                f"build timed out after {self.settings.build_timeout_s:g} s "
                "(SHIPYARD_BUILD_TIMEOUT_S)"
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if job.request.source.upload_id and self.settings.data_dir is not None:
                # An upload is stored for its one build only.
                uploads.discard(self.settings.data_dir, job.request.source.upload_id)

    def clean_leftovers(self) -> int:
        """After a crash: stop what killed builds left (processes, namespaces, mounts) and
        remove their work dirs, which may hold decrypted secrets. Call only before any build
        starts. Returns how many work dirs were removed."""
        if self.settings.work_root.is_dir():
            shutil.rmtree(self.settings.work_root, ignore_errors=True)
        return self.sandbox.clean_leftovers()

    def _try_reuse(
        self,
        job: BuildJob,
        report: Reporter,
        cancel: threading.Event,
        workdir: Path,
        deadline: float,
        reuse: ReuseLookup,
    ) -> Outcome | None:
        source = job.request.source
        # Only where the commit is known without history: path rules pick a commit by walking
        # it, and pull request refs are not resolved by ls-remote here.
        if source.kind is not SourceKind.GIT or not job.repository_url:
            return None
        if source.sha is None and (
            source.pull_request_id is not None or job.path_rules or not source.branch
        ):
            return None
        pin = None
        if source.sha is None:
            pin = check_remote(
                job.repository_url,
                allow_private=self.settings.allow_private_urls,
                allowed_networks=self.settings.allowed_networks,
            )
        sha = source.sha or list_remote_head(
            job.repository_url,
            str(source.branch),
            pin=pin,
            allowed_local_roots=self.settings.allowed_local_roots,
            on_line=report.line,
            cancel=cancel,
            timeout_s=self._remaining(deadline, self.settings.git_timeout_s),
        )
        # Under the gate from the existence check to the new tags: garbage collection cannot
        # delete the earlier image between the two.
        with self.push_gate.pushing(
            lambda: report.line(_GC_WAIT), cancel=cancel, timeout_s=self._remaining(deadline)
        ):
            return self._reuse_checked(job, report, cancel, workdir, deadline, reuse, sha)

    def _reuse_checked(
        self,
        job: BuildJob,
        report: Reporter,
        cancel: threading.Event,
        workdir: Path,
        deadline: float,
        reuse: ReuseLookup,
        sha: str,
    ) -> Outcome | None:
        source = job.request.source
        earlier = reuse(sha)
        if earlier is None:
            return None
        if not remote_image_exists(
            earlier.image,
            target=self.registry,
            tmpdir=workdir,
            cancel=cancel,
            timeout_s=self._remaining(deadline, 30),
        ):
            report.line(f"Image of build {earlier.reused_from} is gone from the registry; building")
            return None
        for reference, identity in earlier.base_images.items():
            current = self._base_identity(reference, scratch=workdir, cancel=cancel)
            if current != identity:
                why = "cannot be checked without a build" if current is None else "changed"
                report.line(f"Base image {reference} {why} since build {earlier.reused_from}; "
                            "building")  # fmt: skip
                return None
        report.resolved(sha, source.branch)
        repository = earlier.image.split("@", 1)[0]
        tags = image_tags(job.build_id, sha, source.branch, job.default_branch)
        add_tags(self.build_target(job.project_id, job.build_id), repository, earlier.digest, tags,
                 timeout_s=self._remaining(deadline, 60))  # fmt: skip
        report.line(
            f"Reusing the image of build {earlier.reused_from}: same commit {sha[:12]}, the "
            "same build settings, arguments, files and secrets, and the same base images "
            f"({', '.join(earlier.base_images) or 'none'}) (set buildkit.useCache to false to "
            "always rebuild)"
        )
        return earlier

    def _base_identity(
        self, reference: str, *, scratch: Path, cancel: threading.Event
    ) -> str | None:
        """What ``reference`` resolves to now, as ``_identity`` recorded it; None when it
        cannot be known without a build (an external registry is only reached by builds,
        through their network policy)."""
        if reference.startswith("localhost/"):
            store = self.sandbox.settings.base_store
            # containers/storage's own index of the shared store: no buildah process (this
            # check sits on the path of every reused build).
            image_id = stored_image_id(store.root, reference) if store is not None else None
            return f"id:{image_id}" if image_id else None
        if reference.startswith(f"{self.registry.host}/"):
            return remote_digest(reference, target=self.registry, tmpdir=scratch, cancel=cancel)
        return None

    def _unpack_upload(self, job: BuildJob, dest: Path, report: Reporter) -> tuple[Path, str]:
        """The upload extracted into ``dest``, and the archive's digest (for provenance)."""
        upload_id = job.request.source.upload_id
        if upload_id is None or self.settings.data_dir is None:
            raise PipelineError("this build's upload cannot be found")
        archive = uploads.archive_path(self.settings.data_dir, upload_id)
        if not archive.is_file():
            raise PipelineError(
                f"upload {upload_id} is gone (deleted after its build or by garbage "
                "collection): upload the directory again"
            )
        report.line(f"Extracting upload {upload_id} ({archive.stat().st_size} bytes)")
        with archive.open("rb") as handle:
            digest = "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
        files = extract_archive(archive, dest, max_bytes=self.settings.max_upload_bytes)
        uploads.discard(self.settings.data_dir, upload_id)  # the build has its copy now
        report.line(f"Extracted {files} files")
        return dest, digest

    def _remaining(self, deadline: float, cap: float | None = None) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimedOut(f"build timed out after {self.settings.build_timeout_s:g} s")
        return min(left, cap) if cap is not None else left

    def _run(
        self,
        job: BuildJob,
        report: Reporter,
        cancel: threading.Event,
        box: BuildSandbox,
        deadline: float,
    ) -> Outcome:
        workdir = box.workdir
        request = job.request
        source = request.source
        started = time.time()
        upload_digest = None
        # Shared base images go into the project's store while the source is fetched.
        importing = box.start_base_import()
        if source.kind is SourceKind.BUNDLE:
            assert source.bundle_url is not None
            root = fetch_bundle(
                source.bundle_url,
                workdir / "src",
                max_bytes=self.settings.max_bundle_bytes,
                timeout_s=self._remaining(deadline, self.settings.bundle_timeout_s),
                allow_private=self.settings.allow_private_urls,
                on_line=report.line,
                cancel=cancel,
            )
            sha, branch = source.sha, source.branch
            origin = Origin(public_url(source.bundle_url), sha, newest_mtime(root))
        elif source.kind is SourceKind.UPLOAD:
            root, upload_digest = self._unpack_upload(job, workdir / "src", report)
            sha, branch = source.sha, source.branch
            # No public place to point at; the archive's newest file time pins the digest.
            origin = Origin(None, sha, newest_mtime(root))
        else:
            if not job.repository_url:
                raise PipelineError("the service has no vcsData.projectUrl to build from")
            pin = check_remote(
                job.repository_url,
                allow_private=self.settings.allow_private_urls,
                allowed_networks=self.settings.allowed_networks,
            )
            fetch: Callable[..., FetchedSource] = fetch_source
            if self.settings.mirror_root is not None:
                # The project's own mirror of the repository: only new objects are fetched.
                fetch = partial(
                    fetch_via_mirror,
                    mirror=MirrorStore(self.settings.mirror_root).path(
                        job.project_id, job.repository_url
                    ),
                    include_git_folder=job.include_git_folder,
                )
            fetched = fetch(
                job.repository_url,
                workdir / "src",
                wrap=box.enter_network,
                full_clone=job.full_clone,
                pin=pin,
                allowed_local_roots=self.settings.allowed_local_roots,
                limits=self.settings.checkout_limits,
                sha=source.sha,
                branch=source.branch,
                pull_request_id=source.pull_request_id,
                rules=job.path_rules if source.sha is None else None,
                on_line=report.line,
                cancel=cancel,
                timeout_s=self._remaining(deadline, self.settings.git_timeout_s),
            )
            root, sha, branch = fetched.path, fetched.sha, fetched.branch or source.branch
            created = fetched.commit_time
            origin = Origin(
                public_url(job.repository_url),
                sha,
                created if created is not None else newest_mtime(root),
            )
            if not job.include_git_folder:
                # Northflank's default: the repository's .git is not part of the context (nor
                # of images that COPY . .); includeGitFolder keeps it.
                shutil.rmtree(root / ".git", ignore_errors=True)
        report.resolved(sha, branch)

        prepared = build_context.prepare(root, request.overrides, workdir / "secrets")
        # Refused before buildah sees it: RUN --mount options that reach the host (buildah
        # 1.28 lacks the fixes for CVE-2024-9675 / CVE-2024-1753), ssh mounts, host network.
        text = prepared.text
        plan = check_dockerfile(
            text,
            context_dir=prepared.context_dir,
            display_path=prepared.display_dockerfile.lstrip("/") or "Dockerfile",
            build_args=request.overrides.build_arguments,
        )
        build_args = dict(request.overrides.build_arguments)
        stage_keys: dict[int, str] = {}
        if self.fingerprint is not None:
            stage_keys = {
                line: self.fingerprint({"purpose": "build-args cache", "args": values})[:32]
                for line, values in stage_args(plan, request.overrides.build_arguments).items()
            }
        keyed = with_args_key(text, stage_keys)
        if job.secrets_key and plan.secret_run_lines:
            # Secret-mount steps are cached per secret value (buildah ignores it); their line
            # numbers move down by the LABEL lines just inserted.
            keyed = with_secret_key(keyed, _shifted(plan, stage_keys))
            build_args[SECRET_KEY_ARG] = job.secrets_key
        # The origin labels as one LABEL step at the end (buildah makes a step and a commit
        # per ``--label``); ``--label`` only when the text cannot take the line safely.
        labels = origin.labels()
        if (labelled := with_labels(keyed, labels)) is not None:
            keyed, labels = labelled, {}
        # buildah always reads the text that was checked, from a file Shipyard wrote outside
        # the context: never the checkout's own file, which buildah would read differently
        # (a lone CR is a line break to the check, a space to buildah; a name ending in .in
        # would go through cpp), plus Shipyard's cache-key lines.
        dockerfile = workdir / "Dockerfile.shipyard"
        dockerfile.write_text(keyed)
        repository = self.registry.repository(job.project_id, job.workload_slug)
        # The immutable tag; the moving ones (:sha, :branch, :latest) are added after the push.
        local_tag = f"{repository}:{job.build_id}"
        tmpdir = workdir / "tmp"
        tmpdir.mkdir(mode=0o700)
        target = self.build_target(job.project_id, job.build_id)
        authfile = None
        if target.username is not None or job.pull_credentials:
            authfile = workdir / "registry-auth.json"
            write_authfile(authfile, target, extra=job.pull_credentials)
        box.hand_over()
        importing.result()  # re-raises what the import raised
        buildah = box.buildah(
            pull_tls_verify=self.settings.pull_tls_verify,
            stall_timeout_s=self.settings.push_stall_timeout_s,
        )

        cache = CachePlan(None, None)
        if self.settings.build_cache is not None:
            cache = self.settings.build_cache.plan(
                self.registry, job.project_id, job.workload_slug, store_root=buildah.store.root,
                image_repository=repository, use_cache=job.use_cache,
            )  # fmt: skip

        report.stage(BuildStatus.BUILDING)
        if (says := cache.describe()) is not None:
            report.line(says)
        # buildah also runs the ONBUILD triggers of every image a stage starts FROM: they are
        # checked like the Dockerfile, and bud then uses exactly the images checked.
        bases: dict[str, str] = {}
        triggered: set[str] = set()
        for image in plan.base_images:
            local = buildah.local_inspect(image) if image.startswith("localhost/") else None
            inspected = local or buildah.pull_and_inspect(
                image, authfile=authfile, tmpdir=tmpdir, cancel=cancel, on_line=report.line,
                timeout_s=self._remaining(deadline, self.settings.git_timeout_s),
            )  # fmt: skip
            triggers = onbuild_triggers(inspected)
            check_triggers(image, triggers, context_dir=prepared.context_dir)
            if triggers:
                triggered.add(image)
            bases[image] = _identity(image, inspected)
        stages = stage_cache.StagePlan(keyed)
        if (
            self.settings.stage_cache
            and self.fingerprint is not None
            and job.use_cache
            and cache.to is None
            and cache.source is None
        ):
            stages = stage_cache.plan(
                keyed, plan, context_dir=prepared.context_dir,
                ignore_files=prepared.ignore_files, bases=bases, triggered=triggered,
                build_args=build_args, target=request.overrides.docker.target,
                store_root=buildah.store.root, workload=job.workload_slug,
                fingerprint=self.fingerprint,
            )  # fmt: skip
            for note in stages.describe():
                report.line(note)
            if stages.hits:
                dockerfile = stage_cache.write_new(workdir / "Dockerfile.stage-cache", stages.text)
        spec = BuildSpec(
            context_dir=prepared.context_dir,
            dockerfile=dockerfile,
            display_dockerfile=prepared.display_dockerfile,
            tag=local_tag,
            tmpdir=tmpdir,
            build_args=build_args,
            target=request.overrides.docker.target,
            secrets=prepared.secrets,
            layers=job.use_cache,
            network=box.run_network,
            authfile=authfile,
            pull="never",
            cache_to=cache.to,
            cache_from=cache.source,
            # The commit's time: the same commit and settings give the same digest.
            timestamp=origin.created,
            labels=labels,
        )
        recorder = stage_cache.Recorder(stages, report.line)
        image_id = buildah.bud(
            spec, on_line=recorder, cancel=cancel, timeout_s=self._remaining(deadline)
        )
        to_record = stage_cache.to_record(stages, recorder, buildah.store.root)

        # The SBOM is read from the image's layers while buildah pushes.
        sbom = (
            SbomJob(box.store.root, image_id, image=repository, created=origin.created)
            if self.settings.supply_chain
            else None
        )
        facts = BuildFacts(
            build_id=job.build_id,
            builder_id=self.settings.builder_id,
            source_kind=str(source.kind),
            origin=origin,
            branch=branch,
            upload_digest=upload_digest,
            upload_id=source.upload_id,
            dockerfile="(inline)" if request.overrides.docker.dockerfile_contents
            else prepared.display_dockerfile,
            context=request.overrides.docker.work_dir or "/",
            target=request.overrides.docker.target,
            build_args=tuple(request.overrides.build_arguments),
            build_files=tuple(request.overrides.build_files),
            secret_mounts=tuple(request.overrides.secret_mounts),
            use_cache=job.use_cache,
            base_images=bases,
            started=started,
        )  # fmt: skip

        report.stage(BuildStatus.UPLOADING)
        tags = image_tags(job.build_id, sha, branch, job.default_branch)[1:]
        with (
            self.push_gate.pushing(
                lambda: report.line(_GC_WAIT), cancel=cancel, timeout_s=self._remaining(deadline)
            ),
            ThreadPoolExecutor(2) as pool,
        ):
            # The stages this build made are named in the store while the image is pushed.
            recording = pool.submit(_record_stages, buildah, to_record) if to_record else None
            # Under the gate (garbage collection deletes blobs no manifest holds yet): the
            # SBOM and its blobs go up while buildah pushes the image.
            attacher = (
                Attacher(target, repository, sbom, timeout_s=self._remaining(deadline, 120))
                if sbom is not None
                else None
            )
            try:
                report.line(f"Pushing {local_tag}")
                digest = buildah.push(
                    image_id,
                    local_tag,
                    target=target,
                    tmpdir=tmpdir,
                    on_line=report.line,
                    cancel=cancel,
                    timeout_s=self._remaining(deadline),
                )
                # The artifacts are attached while the tags are added.
                attaching = (
                    pool.submit(self._attach, attacher, digest, facts, deadline)
                    if attacher is not None
                    else None
                )
                add_tags(target, repository, digest, tags, timeout_s=self._remaining(deadline, 60))
                also = f", also tagged :{', :'.join(tags)}" if tags else ""  # none: an upload
                report.line(f"Pushed {local_tag} ({digest}){also}")
                attached, said = attaching.result() if attaching is not None else (None, [])
                if recording is not None:
                    said += recording.result()
                for line in said:
                    report.line(line)
            finally:
                pool.shutdown(wait=True)  # the attaching thread is done with the client
                if attacher is not None:
                    attacher.close()
        image = f"{repository}@{digest}"
        return Outcome(
            image=image, tag=local_tag, digest=digest, base_images=bases,
            sbom_digest=attached.sbom_digest if attached else None,
            provenance_digest=attached.provenance_digest if attached else None,
        )  # fmt: skip

    def _attach(
        self, attacher: Attacher, digest: str, facts: BuildFacts, deadline: float
    ) -> tuple[Attachments | None, list[str]]:
        """SBOM and provenance as referrers of the image, and the lines to log. A failure
        here is reported in the log and leaves the build successful: the image itself is
        complete."""
        said: list[str] = []
        document = None
        try:
            made = attacher.sbom(self._remaining(deadline, 120))
            document = made.document
            said.append(
                f"SBOM: {made.packages} package(s) found in the image ({made.seconds:.2f} s)"
            )
        except Exception as exc:
            said.append(f"Warning: no SBOM: {type(exc).__name__}: {exc}")
        facts = dataclasses.replace(facts, finished=time.time())
        try:
            attached = attacher.finish(digest, sbom=document, facts=facts,
                                       timeout_s=self._remaining(deadline, 60))  # fmt: skip
        except Exception as exc:
            said.append(f"Warning: could not attach the SBOM and provenance: {exc}")
            return None, said
        how = "referrers tag schema" if attached.via_tag else "referrers API"
        said.append(f"Attached SBOM {attached.sbom_digest or '(none)'} and provenance "
                    f"{attached.provenance_digest} to {digest} ({how})")  # fmt: skip
        return attached, said
