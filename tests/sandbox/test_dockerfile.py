"""check_dockerfile: every known way out through RUN flags is refused, ordinary files pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.sandbox.dockerfile import (
    DockerfilePlan,
    OutsideContext,
    Stage,
    UnsafeDockerfile,
    check_dockerfile,
    inside_context,
    nested_cache_path,
)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """A checkout with the CVE-2024-1753 symlink in it, and some ordinary files."""
    ctx = tmp_path / "ctx"
    (ctx / "src" / "pkg").mkdir(parents=True)
    (ctx / "requirements.txt").write_text("x\n")
    os.symlink("/", ctx / "hostroot")
    os.symlink("../..", ctx / "src" / "up")
    os.symlink("pkg", ctx / "src" / "inner")  # stays inside: fine
    return ctx


def check(text: str, context: Path, **kwargs: object) -> DockerfilePlan:
    return check_dockerfile(text, context_dir=context, display_path="Dockerfile", **kwargs)  # type: ignore[arg-type]


def refused(text: str, context: Path, **kwargs: object) -> str:
    with pytest.raises(UnsafeDockerfile) as err:
        check(text, context, **kwargs)
    return err.value.message


# --- CVE-2024-9675: cache id / source ------------------------------------------------------


def test_cve_2024_9675_payload(context: Path) -> None:
    message = refused(
        "FROM alpine\nRUN --mount=type=cache,id=../../../..,target=/d ls /d\n", context
    )
    assert message == (
        'Dockerfile line 2: RUN --mount cache id "../../../.." is not allowed '
        '(absolute or contains "..")'
    )


@pytest.mark.parametrize(
    "mount",
    [
        "type=cache,id=/,target=/d",
        "type=cache,id=/etc,target=/d",
        "type=cache,id=a/../../b,target=/d",
        "type=cache,id=..,target=/d",
        'type=cache,id="../../..",target=/d',  # quotes are removed before buildah sees it
        "type=cache,id='../..',target=/d",
        "type=cache,ID=../..,target=/d",  # any case of the key
        "type=cache,Id=../..,target=/d",
        "type=cache,target=/d,id=../..",
        "type=cache,src=../..,target=/d",
        "type=cache,source=/etc,target=/d",
        "type=cache,SRC=/,target=/d",
    ],
)
def test_cache_paths_that_leave_are_refused(context: Path, mount: str) -> None:
    message = refused(f"FROM alpine\nRUN --mount={mount} ls\n", context)
    assert message.startswith("Dockerfile line 2: RUN --mount cache ")
    assert 'is not allowed (absolute or contains "..")' in message


def test_repeated_cache_id_is_refused(context: Path) -> None:
    message = refused("FROM a\nRUN --mount=type=cache,id=ok,id=../..,target=/d ls\n", context)
    assert "gives 'id' more than once" in message
    # Aliases count as the same key.
    message = refused("FROM a\nRUN --mount=type=cache,src=a,source=b,target=/d ls\n", context)
    assert "gives 'source' more than once" in message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("id=x", "id=x/evil"),  # x could hold a symlink "evil -> /" made by the first step
        ("target=/x", "target=/x/evil"),  # without id the cache is named after the target
        ("id=root", "target=/root/.cache"),
    ],
)
def test_nested_caches_are_refused(context: Path, first: str, second: str) -> None:
    text = (
        f"FROM a\nRUN --mount=type=cache,{first},target=/c ln -s / /c/evil\n"
        if first.startswith("id")
        else f"FROM a\nRUN --mount=type=cache,{first} ln -s / /x/evil\n"
    ) + f"RUN --mount=type=cache,{second}{'' if 'target' in second else ',target=/h'} ls /h\n"
    message = refused(text, context)
    assert message.startswith("Dockerfile line 3: RUN --mount cache ")
    assert "is nested with the cache" in message and "of line 2" in message


@pytest.mark.parametrize(
    "mount",
    [
        "type=cache,id=.,target=/d",  # buildah's whole cache directory
        "type=cache,target=/",
        "type=cache,id=buildah-cache-lockfiles,target=/d",
        "type=cache,target=relative/dir",
    ],
)
def test_cache_dirs_buildah_keeps_for_itself(context: Path, mount: str) -> None:
    refused(f"FROM a\nRUN --mount={mount} ls\n", context)


def test_cache_from_must_be_an_earlier_stage_and_whole(context: Path) -> None:
    assert "must name an earlier stage" in refused(
        "FROM a\nRUN --mount=type=cache,from=busybox,target=/c ls\n", context
    )
    message = refused(
        "FROM a AS s\nFROM b\nRUN --mount=type=cache,from=s,source=/rootdir,target=/c ls\n",
        context,
    )
    assert "a path inside a stage could be a symlink out of it" in message


# --- CVE-2024-1753: bind sources -----------------------------------------------------------


def test_cve_2024_1753_payload(context: Path) -> None:
    message = refused(
        "FROM alpine\nRUN --mount=type=bind,source=hostroot,target=/h,rw ls\n", context
    )
    assert message == "Dockerfile line 2: RUN --mount bind rw of the build context is not allowed"


@pytest.mark.parametrize(
    "mount",
    [
        "type=bind,source=hostroot,target=/h",
        "type=bind,src=hostroot,target=/h",
        "type=bind,SOURCE=hostroot,target=/h",
        'type=bind,"source=hostroot",target=/h',
        "type=bind,source=hostroot/etc,target=/h",
        "type=bind,source=./hostroot,target=/h",
        "type=bind,source=src/up,target=/h",  # a symlink to ../.. inside a subdirectory
        "type=bind,source=src/up/etc,target=/h",
    ],
)
def test_bind_through_a_symlink_out_is_refused(context: Path, mount: str) -> None:
    message = refused(f"FROM alpine\nRUN --mount={mount} ls /h\n", context)
    assert "resolves outside the build context" in message


@pytest.mark.parametrize(
    "mount",
    [
        "type=bind,source=/,target=/h",
        "type=bind,source=/proc/self/root,target=/h",
        "type=bind,source=/etc/shadow,target=/h",
        "type=bind,source=../..,target=/h",
        "type=bind,source=src/../..,target=/h",
    ],
)
def test_absolute_or_dotdot_bind_sources_are_refused(context: Path, mount: str) -> None:
    assert 'is not allowed (absolute or contains "..")' in refused(
        f"FROM alpine\nRUN --mount={mount} ls\n", context
    )


@pytest.mark.parametrize("rw", ["rw", "readwrite", "RW"])
def test_rw_bind_of_the_context_is_refused(context: Path, rw: str) -> None:
    # buildah 1.28 writes through to the checkout (CVE-2024-11218): a step could plant a
    # symlink there for a later bind mount.
    assert "of the build context is not allowed" in refused(
        f"FROM a\nRUN --mount=type=bind,target=/ctx,{rw} ln -s / /ctx/x\n", context
    )


@pytest.mark.parametrize("source", ["/rootdir", "rootdir", "usr/lib", "../x", "/proc/self/root"])
def test_bind_from_a_stage_takes_its_whole_root_only(context: Path, source: str) -> None:
    # The upstream regression test: base has rootdir -> /, built by the same Dockerfile.
    text = (
        "FROM alpine AS base\nRUN ln -s / /rootdir\nFROM alpine\n"
        f"RUN --mount=type=bind,from=base,source={source},destination=/exploit,rw ls /exploit\n"
    )
    message = refused(text, context)
    assert message.startswith("Dockerfile line 4: RUN --mount bind from=base")


@pytest.mark.parametrize(
    "option",
    [
        "bind-propagation=shared",
        "bind-propagation=rshared",
        "bind-propagation=rw,suid",  # CVE-2024-9407: the value was passed on as options
        "shared",
        "rslave",
        "z",
        "Z",
        "U",
        "relabel=shared",
        "bogus=1",
        "",
    ],
)
def test_host_changing_and_unknown_options_are_refused(context: Path, option: str) -> None:
    refused(f"FROM a\nRUN --mount=type=bind,target=/c,{option} ls\n", context)


# --- how the flags are written ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Continuation lines, with comments and an empty line inside (buildah skips both).
        "FROM a\nRUN \\\n  --mount=type=cache,id=../..,target=/d \\\n  ls\n",
        "FROM a\nRUN \\\n# a comment\n  --mount=type=cache,id=../..,target=/d ls\n",
        "FROM a\nRUN \\\n\n  --mount=type=cache,id=../..,target=/d ls\n",
        "FROM a\nRUN \\   \n   # indented comment\n\n--mount=type=cache,id=../..,target=/d ls\n",
        # A second mount after a harmless one.
        "FROM a\nRUN --mount=type=tmpfs,target=/t --mount=type=cache,id=../..,target=/d ls\n",
        # Backslash escapes and quotes inside the flag word.
        "FROM a\nRUN --mount=type=cache,id=\\.\\./..,target=/d ls\n",
        "FROM a\nRUN --mount=type=cache,id=.'.'/..,target=/d ls\n",
        'FROM a\nRUN --mount="type=cache,id=../..,target=/d" ls\n',
        # CRLF line ends and a byte-order mark.
        "\ufeffFROM a\r\nRUN --mount=type=cache,id=../..,target=/d ls\r\n",
        # Lower-case instruction, leading spaces.
        "from a\n   run --mount=type=cache,id=../..,target=/d ls\n",
        # In a stage after several others.
        "FROM a AS one\nFROM b AS two\nFROM two\nRUN --mount=type=cache,id=../..,target=/d ls\n",
    ],
)
def test_flags_are_read_as_buildah_reads_them(context: Path, text: str) -> None:
    message = refused(text, context)
    assert "RUN --mount cache id" in message or "ambiguous" in message


def test_the_line_named_is_the_instructions_first_line(context: Path) -> None:
    text = (
        "# hello\n\nFROM a\n\nRUN echo \\\n  hi\nRUN \\\n  --mount=type=cache,id=/x,target=/d ls\n"
    )
    assert refused(text, context).startswith("Dockerfile line 7: ")


def test_display_path_names_the_file(context: Path) -> None:
    with pytest.raises(UnsafeDockerfile) as err:
        check_dockerfile(
            "FROM a\nRUN --network=host ls\n",
            context_dir=context,
            display_path="/docker/Dockerfile.prod",
        )
    assert err.value.message.startswith("docker/Dockerfile.prod line 2: ")


@pytest.mark.parametrize(
    "flag",
    [
        "--mount=type=cache,id=$X,target=/d",  # expanded by buildah with ARGs and base ENV
        "--mount=type=cache,id=${X},target=/d",
        "--mount=type=cache,id=\\$X,target=/d",
        '--mount="type=cache, id=x,target=/d"',
        "--mount=type=cache,id=é,target=/d",
    ],
)
def test_flag_words_buildah_would_process_again_are_refused(context: Path, flag: str) -> None:
    message = refused(f"FROM a\nARG X=../../..\nRUN {flag} ls\n", context)
    assert "variables, quotes, backslashes and spaces are not supported" in message


@pytest.mark.parametrize(
    "mount",
    [
        "type=Cache,id=../..,target=/d",
        "TYPE=cache,id=../..,target=/d",
        "id=../..,type=cache,target=/d",  # buildah 1.28 reads the type from the first field
        "target=/d",
        "type=cache",  # no options: buildah would reuse the previous mount's
        "type=cache=bind,target=/d",
        "type=volume,target=/d",
    ],
)
def test_mount_types_buildah_would_read_differently_are_refused(context: Path, mount: str) -> None:
    refused(f"FROM a\nRUN --mount=type=tmpfs,target=/t --mount={mount} ls\n", context)


def test_repeated_type_is_refused(context: Path) -> None:
    assert "'type'" in refused(
        "FROM a\nRUN --mount=type=tmpfs,target=/x,type=bind,source=hostroot ls\n", context
    )


def test_escape_directive_is_refused(context: Path) -> None:
    assert "escape parser directive" in refused("# escape=`\nFROM a\n", context)
    assert "escape parser directive" in refused(
        "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n", context
    )
    check("# escape=\\\nFROM a\n", context)


def test_onbuild_run_with_flags_is_refused(context: Path) -> None:
    assert "ONBUILD RUN with flags" in refused(
        "FROM a\nONBUILD RUN --mount=type=cache,id=../..,target=/d ls\n", context
    )


# --- secrets, ssh, tmpfs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "mount",
    [
        "type=secret,id=x,src=/etc/shadow",
        "type=secret,id=x,source=/root/.ssh/id_rsa",
        "type=secret,id=x,env=AWS_SECRET_ACCESS_KEY",
    ],
)
def test_secret_host_paths_are_refused(context: Path, mount: str) -> None:
    message = refused(f"FROM a\nRUN --mount={mount} cat /run/secrets/x\n", context)
    assert "type=secret" in message


@pytest.mark.parametrize("secret_id", ["../../etc/cron.d/x", "a/b", "", ".."])
def test_secret_ids_are_plain_names(context: Path, secret_id: str) -> None:
    refused(f"FROM a\nRUN --mount=type=secret,id={secret_id},target=/s cat /s\n", context)


def test_ssh_mounts_are_refused(context: Path) -> None:
    assert "no ssh agent is offered" in refused(
        "FROM a\nRUN --mount=type=ssh,id=default git clone x\n", context
    )


# --- network and other RUN flags -------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    ["--network=host", "--network=bridge", "--network=container:x", "--security=insecure"],
)
def test_other_run_flags_are_refused(context: Path, flag: str) -> None:
    assert "is not allowed" in refused(f"FROM a\nRUN {flag} ls\n", context)


@pytest.mark.parametrize("flag", ["--MOUNT=type=tmpfs,target=/t", "--mount", "--device=/dev/kmsg"])
def test_unknown_flag_spellings_are_refused(context: Path, flag: str) -> None:
    refused(f"FROM a\nRUN {flag} ls\n", context)


# --- ordinary Dockerfiles --------------------------------------------------------------------


def test_ordinary_multi_stage_dockerfile_passes(context: Path) -> None:
    text = """\
# syntax=docker/dockerfile:1
ARG PYTHON=3.12
ARG REGISTRY=docker.io/library
FROM ${REGISTRY}/python:${PYTHON}-slim AS build
ARG VERSION
ENV PIP_NO_CACHE_DIR=0
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/pip \\
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \\
    pip install -r /tmp/requirements.txt
RUN --mount=type=cache,id=apt,target=/var/cache/apt,sharing=locked \\
    --mount=type=cache,id=apt-lists,target=/var/lib/apt/lists,sharing=locked \\
    apt-get update
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true,mode=0400,uid=0,gid=0 \\
    --mount=type=secret,id=token \\
    npm ci
RUN --mount=type=bind,target=/src,ro --mount=type=bind,source=src/inner,target=/p make
RUN --mount=type=tmpfs,target=/tmp,tmpfs-size=64m --network=none make test
RUN --network=default ["sh", "-c", "true"]

FROM build AS test
RUN --mount=type=cache,from=build,target=/b ls /b

FROM gcr.io/distroless/python3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ARG VERSION
ARG COMMIT=unknown
COPY --from=build /src/dist /app
COPY --from=0 /etc/passwd /etc/passwd
COPY --from=ghcr.io/acme/tools:1.2 /bin/tool /bin/tool
RUN --mount=type=bind,from=build,target=/build,rw ls /build
RUN --mount=type=bind,from=busybox:1.36,target=/bb /bb/bin/true
"""
    plan = check(text, context, build_args={"PYTHON": "3.11"})
    assert plan.stage_names == ("build", "test", None)
    assert plan.stages[0] == Stage(
        0, "build", "docker.io/library/python:3.11-slim", 4, ("VERSION",)
    )
    assert plan.stages[1].base == "build"
    assert plan.stages[2].arg_names == ("VERSION", "COMMIT")
    assert plan.base_images == (
        "docker.io/library/python:3.11-slim",
        "gcr.io/distroless/python3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "ghcr.io/acme/tools:1.2",
        "busybox:1.36",
    )
    assert plan.global_arg_names == ("PYTHON", "REGISTRY")
    assert plan.cache_paths == ("root/.cache/pip", "apt", "apt-lists")


def test_scratch_and_stage_references_are_not_images(context: Path) -> None:
    plan = check("FROM scratch AS a\nCOPY x /x\nFROM A\nCOPY --from=a /x /y\n", context)
    assert plan.base_images == ()
    assert [stage.base for stage in plan.stages] == ["scratch", "A"]  # as written


def test_a_later_stage_name_is_an_image(context: Path) -> None:
    # buildah would look "later" up as an image: the caller must be asked about it.
    plan = check("FROM a AS first\nCOPY --from=later /x /x\nFROM b AS later\n", context)
    assert plan.base_images == ("a", "later", "b")


def test_stage_index_must_be_earlier(context: Path) -> None:
    assert "not the index of an earlier stage" in refused(
        "FROM a\nCOPY --from=1 /x /y\nFROM b\n", context
    )


def test_same_cache_twice_is_one_cache(context: Path) -> None:
    text = "FROM a\nRUN --mount=type=cache,id=go,target=/go ls\nRUN --mount=type=cache,id=go,target=/g ls\n"
    assert check(text, context).cache_paths == ("go", "go")


def test_heredoc_bodies_are_checked_as_instructions(context: Path) -> None:
    # buildah 1.28 has no heredocs: the body is read as instructions.
    text = "FROM a\nRUN <<EOF\nRUN --mount=type=cache,id=../..,target=/d ls\nEOF\n"
    assert "RUN --mount cache id" in refused(text, context)


# --- ARG substitution in FROM ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "build_args", "expected"),
    [
        ("ARG B=alpine\nFROM $B\n", {}, "alpine"),
        ("ARG B=alpine\nFROM $B\n", {"B": "debian:12"}, "debian:12"),
        ("ARG B\nFROM ${B:-busybox}\n", {}, "busybox"),
        ("ARG B\nFROM ${B:-busybox}\n", {"B": "x"}, "x"),
        (
            'ARG R="docker.io"\nARG I=${R}/library/alpine\nFROM ${I}:3\n',
            {},
            "docker.io/library/alpine:3",
        ),
        ("ARG T=1\nFROM alpine${T:+:}${T}\n", {}, "alpine:1"),
        ("FROM --platform=$BUILDPLATFORM alpine\n", {}, "alpine"),
    ],
)
def test_from_arguments_are_substituted(
    context: Path, text: str, build_args: dict[str, str], expected: str
) -> None:
    assert check(text, context, build_args=build_args).base_images == (expected,)


@pytest.mark.parametrize(
    "text",
    [
        "FROM $IMAGE\n",
        "ARG IMAGE\nFROM $IMAGE\n",  # declared, no value, none given
        "FROM alpine\nARG IMAGE=x\nFROM $IMAGE\n",  # stage ARGs are not usable in FROM
        "ARG A=x\nFROM ${A/x/y}\n",
    ],
)
def test_unresolvable_from_is_refused(context: Path, text: str) -> None:
    message = refused(text, context, build_args={"OTHER": "x"})
    assert "FROM" in message


def test_undeclared_build_args_do_not_reach_from(context: Path) -> None:
    refused("FROM $IMAGE\n", context, build_args={"IMAGE": "alpine"})


@pytest.mark.parametrize("value", ["--from=$X", "--from=${X}", "--from="])
def test_copy_from_with_variables_is_refused(context: Path, value: str) -> None:
    refused(f"FROM a\nARG X=b\nCOPY {value} /x /y\n", context)


def test_no_from_is_refused(context: Path) -> None:
    assert "no FROM" in refused("# nothing\n", context)


# --- helpers ---------------------------------------------------------------------------------


def test_inside_context(context: Path) -> None:
    real = context.resolve()
    assert inside_context(context, "src/inner") == real / "src" / "pkg"
    assert inside_context(context, "/requirements.txt") == real / "requirements.txt"
    assert inside_context(context, ".") == real
    assert inside_context(context, "missing/file") == real / "missing" / "file"
    for escaping in ("hostroot", "src/up", "..", "../ctx2", "/../.."):
        with pytest.raises(OutsideContext):
            inside_context(context, escaping)


def test_inside_context_prefix_is_not_containment(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx-other").mkdir()
    os.symlink("../ctx-other", tmp_path / "ctx" / "sib")
    with pytest.raises(OutsideContext):
        inside_context(tmp_path / "ctx", "sib")


def test_nested_cache_path() -> None:
    assert nested_cache_path("a/b", ["a"]) == "a"
    assert nested_cache_path("a", ["a/b"]) == "a/b"
    assert nested_cache_path("a", ["a", "ab"]) is None
    assert nested_cache_path("ab/c", ["a"]) is None
