"""Refuse Dockerfiles whose RUN flags could reach outside the build (issue 9, item 2).

Debian 12's buildah 1.28.2 has none of the upstream fixes for ``RUN --mount``:

- CVE-2024-9675: a cache ``id`` is joined to the cache directory as given
  (``id=../../..`` mounts the host's ``/``);
- CVE-2024-1753: a bind ``source`` is joined lexically and the kernel then follows any
  symlink in it (a repo symlink ``hostroot -> /``, or one inside a stage's root file system);
- CVE-2024-11218: ``rw`` bind mounts of the context write through to the checkout on the host;
- CVE-2024-9407: ``bind-propagation=<anything>`` is passed on as a raw mount option.

So every RUN flag is checked here before buildah sees the file, with rules that hold whatever
buildah then does with a value: cache ids and paths stay single, relative and un-nested;
bind sources stay inside the checkout (symlinks resolved) and are read-only; a mount from a
stage or image takes its whole root only (its content is built by the untrusted Dockerfile,
so a sub-path could be a symlink we cannot see yet); secrets name only an id; ssh agents,
other networks and unknown flags or options are refused.

The file is split into instructions exactly as buildah 1.28 does (openshift/imagebuilder's
parser: continuation lines, comments and empty lines inside them, the escape directive, and
the flag words with their quotes and backslashes). A checker that splits lines differently
from the builder can be walked around — dockerfile-parse, for one, ends an instruction at an
empty continuation line where buildah goes on — so dockerfile-parse is only a second
opinion: a RUN whose flags it reads differently is refused as ambiguous.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

from shipyard.pipeline.errors import PipelineError


class UnsafeDockerfile(PipelineError):
    """The Dockerfile asks for something that could leave the build; ``message`` names the
    file, the line and the option."""


class OutsideContext(ValueError):
    """A path resolves (following symlinks) outside the directory it must stay in."""


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None  # lower-cased, as buildah compares them
    base: str  # the FROM reference after ARG substitution (an image or an earlier stage)
    line: int
    arg_names: tuple[str, ...]  # ARGs declared in this stage, in order


@dataclass(frozen=True)
class DockerfilePlan:
    stages: tuple[Stage, ...]
    # Every image the build reads: FROM, COPY --from and RUN --mount from= references that
    # are neither an earlier stage nor ``scratch``, in first-seen order. Whether each is
    # allowed (own project, shared, external) is the caller's decision.
    base_images: tuple[str, ...]
    # ARGs declared before the first FROM (usable in FROM lines only).
    global_arg_names: tuple[str, ...]
    # Host-side cache directories (relative to buildah's cache parent) that RUN
    # --mount=type=cache uses. None is inside another one here; a caller that keeps the cache
    # parent across builds must keep that true across builds too (see ``nested_cache_path``).
    cache_paths: tuple[str, ...]
    # First physical line of each RUN with a secret mount: buildah's layer cache ignores
    # the secret's value, so the caller keys those steps by it (``with_secret_key``).
    secret_run_lines: tuple[int, ...] = ()

    @property
    def stage_names(self) -> tuple[str | None, ...]:
        return tuple(stage.name for stage in self.stages)


def inside_context(context_dir: Path, relative: str) -> Path:
    """``context_dir``/``relative`` with every symlink resolved; ``OutsideContext`` if that
    leaves ``context_dir`` (itself resolved first). ``relative`` may start with "/": it is
    read from the context's root, as buildah reads bind sources."""
    root = os.path.realpath(context_dir)
    candidate = os.path.realpath(os.path.join(root, relative.lstrip("/")))
    if candidate != root and not candidate.startswith(root.rstrip("/") + "/"):
        raise OutsideContext(f"{relative!r} resolves outside {context_dir}")
    return Path(candidate)


def nested_cache_path(path: str, others: Iterable[str]) -> str | None:
    """The first of ``others`` that ``path`` lies inside of, or that lies inside ``path``
    (component-wise), else None. Equal paths are one cache, not nested."""
    for other in others:
        if other != path and (path.startswith(other + "/") or other.startswith(path + "/")):
            return other
    return None


# --- splitting into instructions, as openshift/imagebuilder (buildah 1.28) does -------------

# Go's unicode.IsSpace (strings.TrimSpace, bytes.TrimLeftFunc). Python's str.isspace differs
# (it counts \x1c-\x1f), so the set is spelled out.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# unicode.IsSpace applied to a single byte taken as a rune (extractBuilderFlags works on bytes).
_GO_SPACE_BYTES = frozenset(b"\t\n\v\f\r \x85\xa0")
_TOKEN_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_CONTINUATION = re.compile(r"\\[ \t]*\Z")
_ESCAPE_DIRECTIVE = re.compile(r"#[ \t]*escape[ \t]*=[ \t]*(.)")


@dataclass(frozen=True)
class Instruction:
    """One instruction as buildah 1.28 reads it (``instructions``)."""

    line: int  # 1-based number of its first physical line
    cmd: str  # lower-cased
    flags: tuple[str, ...]
    args: str


def _logical_lines(text: str, where: str) -> Iterator[tuple[int, str]]:
    """(first line number, joined text) of each instruction, as imagebuilder's Parse.

    Not heredocs: buildah 1.28 reads a heredoc's body lines as instructions, so they are
    checked like any other (a builder that knows heredocs reads fewer instructions)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # bufio.Scanner yields no empty token after a final newline
    lines = [line.removesuffix("\r") for line in lines]
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    # Another escape character changes continuation lines and flag quoting; one way of
    # reading the file is enough to get right, so only the default is accepted. buildkit
    # reads the directive after "# syntax=" too, imagebuilder does not: any non-default one
    # in the leading comments is refused, so that both read the file alike.
    for number, raw in enumerate(lines, start=1):
        token = raw.lstrip(_GO_SPACE)
        if token and not token.startswith("#"):
            break
        match = _ESCAPE_DIRECTIVE.match(token.lower())
        if match is not None and match.group(1) != "\\":
            raise UnsafeDockerfile(
                f"{where} line {number}: the escape parser directive is not supported "
                "(use the default backslash)"
            )

    index = 0
    while index < len(lines):
        number = index + 1
        token = lines[index].lstrip(_GO_SPACE)
        index += 1
        line, continued = _trim_continuation("" if token.startswith("#") else token)
        if not continued and line == "":
            continue
        while continued and index < len(lines):
            raw = lines[index]
            index += 1
            body = "" if raw.startswith("#") else raw
            stripped = body.lstrip(_GO_SPACE)
            if stripped == "" or stripped.startswith("#"):
                continue  # comments and empty lines inside an instruction are skipped
            body, continued = _trim_continuation(body)
            line += body
        yield number, line


def _trim_continuation(line: str) -> tuple[str, bool]:
    if _CONTINUATION.search(line):
        return _CONTINUATION.sub("", line), True
    return line, False


def _split_command(line: str) -> tuple[str, tuple[str, ...], str]:
    parts = _TOKEN_WHITESPACE.split(line.strip(_GO_SPACE), maxsplit=1)
    cmd = parts[0].lower()
    if len(parts) < 2:
        return cmd, (), ""
    rest, flags = _extract_builder_flags(parts[1])
    return cmd, flags, rest.strip(_GO_SPACE)


def _extract_builder_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """Leading ``--flag`` words (quotes and backslashes removed) and the rest of the line.

    imagebuilder walks the UTF-8 bytes one by one, so this does too; a word's bytes become
    characters one to one (latin-1), as Go's ``string(rune(b))`` does.
    """
    data = line.encode("utf-8")
    words: list[str] = []
    word = bytearray()
    blank_ok = False
    in_word, in_quote = False, False
    quote = 0
    pos = 0
    while pos <= len(data):
        ch = data[pos] if pos < len(data) else 0
        if not in_word and not in_quote:
            if pos == len(data):
                break
            if ch in _GO_SPACE_BYTES:
                pos += 1
                continue
            if ch != ord("-") or pos + 1 == len(data) or data[pos + 1] != ord("-"):
                return data[pos:].decode("utf-8", "replace"), tuple(words)
            in_word = True
        if pos == len(data):
            if bytes(word) != b"--" and (blank_ok or word):
                words.append(word.decode("latin-1"))
            break
        if in_word:
            if ch in _GO_SPACE_BYTES:
                in_word = False
                if bytes(word) == b"--":
                    return data[pos:].decode("utf-8", "replace"), tuple(words)
                if blank_ok or word:
                    words.append(word.decode("latin-1"))
                word = bytearray()
                blank_ok = False
                pos += 1
                continue
            if ch in (ord("'"), ord('"')):
                quote, blank_ok = ch, True
                in_word, in_quote = False, True
                pos += 1
                continue
            if ch == ord("\\"):
                if pos + 1 == len(data):
                    pos += 1
                    continue
                pos += 1
                ch = data[pos]
            word.append(ch)
            pos += 1
            continue
        # in a quote
        if ch == quote:
            in_word, in_quote = True, False
            pos += 1
            continue
        if ch == ord("\\"):
            if pos + 1 == len(data):
                in_word, in_quote = True, False
                pos += 1
                continue
            pos += 1
            ch = data[pos]
        word.append(ch)
        pos += 1
    return "", tuple(words)


def instructions(text: str, where: str = "Dockerfile") -> list[Instruction]:
    """``text`` split into instructions exactly as buildah 1.28 splits it (flags apart,
    command lower-cased). Raises ``UnsafeDockerfile`` where the check would."""
    return _instructions(text, where)


def _instructions(text: str, where: str) -> list[Instruction]:
    result = []
    for number, line in _logical_lines(text, where):
        cmd, flags, args = _split_command(line)
        result.append(Instruction(number, cmd, flags, args))
    return result


# --- ARG substitution (FROM lines) ----------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+])(?P<word>[^}$]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# What an image reference (with tag and digest) is made of; anything else is refused rather
# than guessed at (quotes, backslashes and "$" would be processed again by buildah).
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*\Z")


class _Unresolved(Exception):
    pass


def _substitute(word: str, values: Mapping[str, str | None]) -> str:
    """``$X``, ``${X}``, ``${X:-w}``, ``${X-w}``, ``${X:+w}``, ``${X+w}`` from ``values``
    (None = declared without a value). Raises ``_Unresolved`` naming the variable."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = values.get(name)
        is_set = name in values and value is not None
        op, alternative = match.group("op"), match.group("word") or ""
        if op == ":-":
            return value if is_set and value else alternative
        if op == "-":
            return value if is_set and value is not None else alternative
        if op == ":+":
            return alternative if is_set and value else ""
        if op == "+":
            return alternative if is_set else ""
        if not is_set or value is None:
            raise _Unresolved(name)
        return value

    result = _VARIABLE.sub(replace, word)
    if "$" in result:
        raise _Unresolved(result)
    return result


# --- the mount rules ------------------------------------------------------------------------

# Flag words may hold only these: "$" would be expanded again by buildah (with ARGs and the
# base image's ENV, which are not known here), and quotes, backslashes or spaces would be
# processed again by its shell lexer. No ordinary mount option needs anything else.
_FLAG_WORD = re.compile(r"--[A-Za-z0-9_./,=:@+%~-]*\Z")
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_ALIASES = {
    "src": "source",
    "dst": "target",
    "destination": "target",
    "readonly": "ro",
    "readwrite": "rw",
}
_NETWORKS = frozenset({"none", "default"})
# Options that change the host side: propagation that lets mounts made inside reach the host,
# relabelling (z, Z, relabel) and chown (U) of the host source.
_HOST_CHANGING = frozenset({"shared", "rshared", "slave", "rslave", "z", "relabel", "u"})
_FLAGS_ONLY = frozenset(
    {"ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "bind-nonrecursive"}
    | {"tmpcopyup", "notmpcopyup"}
)
_ALLOWED: dict[str, frozenset[str]] = {
    "bind": frozenset(
        {"target", "source", "from", "ro", "rw", "bind-propagation", "bind-nonrecursive"}
        | {"nosuid", "nodev", "noexec", "private", "rprivate", "consistency"}
    ),
    "cache": frozenset(
        {"target", "id", "source", "from", "ro", "rw", "sharing", "mode", "uid", "gid"}
        | {"bind-propagation", "nosuid", "nodev", "noexec", "private", "rprivate"}
    ),
    "tmpfs": frozenset(
        {"target", "size", "tmpfs-size", "tmpfs-mode", "ro", "nosuid", "nodev", "noexec"}
        | {"tmpcopyup", "notmpcopyup"}
    ),
    "secret": frozenset({"id", "target", "required", "mode", "uid", "gid"}),
}
# buildah keeps the lock files of cache mounts in this directory of the cache parent.
_CACHE_LOCKFILES = "buildah-cache-lockfiles"


@dataclass
class _Mount:
    type: str
    options: dict[str, str | None]  # canonical key -> value (None: given without "=")
    spelled: dict[str, str]  # canonical key -> the key as written


@dataclass
class _State:
    where: str
    context_dir: Path
    stages: list[Stage] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    cache_paths: list[tuple[str, int]] = field(default_factory=list)

    def fail(self, line: int, message: str) -> UnsafeDockerfile:
        return UnsafeDockerfile(f"{self.where} line {line}: {message}")

    def reference(self, line: int, what: str, value: str) -> bool:
        """True if ``value`` names an earlier stage; else it is an image, recorded."""
        if value.isdigit():
            if int(value) < len(self.stages) - 1:
                return True
            raise self.fail(line, f"{what} {value} is not the index of an earlier stage")
        earlier = {stage.name for stage in self.stages[:-1] if stage.name}
        if value.lower() in earlier:
            return True
        if not _IMAGE_REFERENCE.match(value):
            raise self.fail(line, f"{what} {value!r} is not an image reference")
        if value.lower() != "scratch" and value not in self.images:
            self.images.append(value)
        return False


def _parse_mount(state: _State, line: int, spec: str) -> _Mount:
    fields = spec.split(",")
    kind = fields[0].split("=")
    # buildah 1.28 reads the type from the first field only, and only spelled "type=".
    if len(kind) != 2 or kind[0] != "type":
        raise state.fail(line, f"RUN --mount={spec} must start with type=<bind|cache|tmpfs|secret>")
    if len(fields) < 2:
        # buildah 1.28 would reuse the previous mount's options for this one.
        raise state.fail(line, f"RUN --mount={spec} has no options (a target is needed)")
    mount = _Mount(kind[1], {}, {})
    for option in fields[1:]:
        key, has_value, value = option.partition("=")
        canonical = _ALIASES.get(key.lower(), key.lower())
        if canonical in mount.options:
            raise state.fail(
                line, f"RUN --mount type={mount.type} gives {canonical!r} more than once"
            )
        mount.options[canonical] = value if has_value else None
        mount.spelled[canonical] = key
    return mount


def _check_relative(state: _State, line: int, mount: _Mount, key: str) -> str:
    """The value of ``key``: refused if absolute or with a ".." component; normalised."""
    value = mount.options.get(key) or ""
    if value.startswith("/") or ".." in value.split("/"):
        raise state.fail(
            line,
            f'RUN --mount {mount.type} {mount.spelled[key]} "{value}" is not allowed '
            '(absolute or contains "..")',
        )
    return posixpath.normpath(value) if value else "."


def _check_options(state: _State, line: int, mount: _Mount) -> None:
    allowed = _ALLOWED.get(mount.type)
    if mount.type == "ssh":
        raise state.fail(line, "RUN --mount type=ssh is not allowed (no ssh agent is offered)")
    if allowed is None:
        raise state.fail(line, f"RUN --mount type={mount.type!r} is not supported")
    for key, value in mount.options.items():
        spelled = mount.spelled[key]
        if key in ("source", "env") and mount.type == "secret":
            raise state.fail(
                line, f"RUN --mount type=secret {spelled}= is not allowed (it names a host path)"
            )
        if key in _HOST_CHANGING:
            raise state.fail(
                line,
                f"RUN --mount type={mount.type} option {spelled!r} is not allowed "
                "(it changes the host side of the mount)",
            )
        if key not in allowed:
            raise state.fail(
                line, f"RUN --mount type={mount.type} option {spelled!r} is not allowed"
            )
        if (value is None) != (key in _FLAGS_ONLY):
            needs = "takes no value" if key in _FLAGS_ONLY else "needs a value"
            raise state.fail(line, f"RUN --mount type={mount.type} option {spelled!r} {needs}")
        if key == "bind-propagation" and value not in ("private", "rprivate"):
            raise state.fail(
                line, f"RUN --mount bind-propagation={value} is not allowed (private or rprivate)"
            )
        if key in ("uid", "gid") and not (value or "").isdigit():
            raise state.fail(line, f"RUN --mount {spelled}={value} is not a number")
        if key == "mode" and not re.fullmatch(r"[0-7]{1,4}", value or ""):
            raise state.fail(line, f"RUN --mount mode={value} is not an octal mode")
        if key == "sharing" and value not in ("shared", "private", "locked"):
            raise state.fail(line, f"RUN --mount sharing={value} is not shared, private or locked")


def _whole_root_only(state: _State, line: int, mount: _Mount) -> None:
    """With from=, only the whole root of the stage or image: its files are the untrusted
    build's own output, and buildah 1.28 follows a symlink in a sub-path onto the host."""
    value = mount.options.get("source") or ""
    if posixpath.normpath("/" + value) != "/" or ".." in value.split("/"):
        raise state.fail(
            line,
            f"RUN --mount {mount.type} from={mount.options['from']} "
            f'{mount.spelled["source"]}="{mount.options["source"]}" is not allowed: '
            "a path inside a stage could be a symlink out of it; mount the whole stage "
            "(no source) and use the path under the target",
        )


def _check_bind(state: _State, line: int, mount: _Mount) -> None:
    source = mount.options.get("source")
    origin = mount.options.get("from")
    if origin is not None:
        state.reference(line, "RUN --mount from=", origin)
        if source is not None:
            _whole_root_only(state, line, mount)
        return
    if "rw" in mount.options:
        # buildah 1.28 writes through to the checkout: a symlink made there would lead a later
        # bind mount out of it.
        raise state.fail(
            line, f"RUN --mount bind {mount.spelled['rw']} of the build context is not allowed"
        )
    relative = _check_relative(state, line, mount, "source") if source is not None else "."
    try:
        inside_context(state.context_dir, relative)
    except OutsideContext:
        raise state.fail(
            line,
            f'RUN --mount bind {mount.spelled["source"]} "{source}" resolves outside the '
            "build context (it is or passes through a symlink)",
        ) from None


def _check_cache(state: _State, line: int, mount: _Mount) -> None:
    origin = mount.options.get("from")
    if origin is not None:
        if not state.reference(line, "RUN --mount type=cache from=", origin):
            raise state.fail(line, f"RUN --mount cache from={origin} must name an earlier stage")
        if "source" in mount.options:
            _whole_root_only(state, line, mount)
        return
    if "source" in mount.options:
        _check_relative(state, line, mount, "source")
    if "id" in mount.options:
        path = _check_relative(state, line, mount, "id")
        shown = f'id "{mount.options["id"]}"'
    else:
        target = mount.options.get("target") or ""
        if not target.startswith("/"):
            raise state.fail(line, "RUN --mount cache without id needs an absolute target")
        # Without an id buildah names the cache after the target.
        path = posixpath.normpath(target).lstrip("/") or "."
        shown = f'target "{target}"'
    if path == ".":
        raise state.fail(line, f"RUN --mount cache {shown} would be the whole cache directory")
    if path.split("/")[0] == _CACHE_LOCKFILES:
        raise state.fail(line, f"RUN --mount cache {shown} is buildah's lock file directory")
    nested = nested_cache_path(path, tuple(p for p, _ in state.cache_paths))
    if nested is not None:
        other_line = next(n for p, n in state.cache_paths if p == nested)
        raise state.fail(
            line,
            f'RUN --mount cache {shown} is nested with the cache "{nested}" of line '
            f"{other_line}: a step could leave a symlink there that leads out; "
            "give each cache its own id",
        )
    state.cache_paths.append((path, line))


def _check_secret(state: _State, line: int, mount: _Mount) -> None:
    secret_id = mount.options.get("id") or ""
    # buildah copies the secret to <container dir>/secrets/<id> on the host.
    if not _SAFE_ID.match(secret_id):
        raise state.fail(line, f"RUN --mount secret id {secret_id!r} is not a plain name")


def _check_run_flags(state: _State, line: int, flags: tuple[str, ...], what: str = "RUN") -> None:
    for word in flags:
        if not _FLAG_WORD.match(word):
            raise state.fail(
                line,
                f"{what} flag {word!r} is not allowed: variables, quotes, backslashes and "
                "spaces are not supported in RUN flags",
            )
        name, _, value = word.partition("=")
        if word.startswith("--mount="):
            mount = _parse_mount(state, line, value)
            _check_options(state, line, mount)
            if mount.type == "bind":
                _check_bind(state, line, mount)
            elif mount.type == "cache":
                _check_cache(state, line, mount)
            elif mount.type == "secret":
                _check_secret(state, line, mount)
        elif word.startswith("--network="):
            if value not in _NETWORKS:
                raise state.fail(
                    line, f"{what} --network={value} is not allowed (only none or default)"
                )
        else:
            raise state.fail(
                line, f"{what} flag {name} is not allowed (only --mount and --network=none|default)"
            )


# --- the whole file -------------------------------------------------------------------------


def check_dockerfile(
    text: str,
    *,
    context_dir: Path,
    display_path: str,
    build_args: Mapping[str, str] | None = None,
) -> DockerfilePlan:
    """Check every instruction of ``text``; the stages and images it uses.

    ``context_dir``: the build context (bind sources are resolved in it). ``display_path``:
    how the file is named in messages ("Dockerfile", "docker/Dockerfile.prod").
    ``build_args``: the build's arguments, for ARGs in FROM lines. Raises
    ``UnsafeDockerfile``.
    """
    where = display_path.lstrip("/") or "Dockerfile"
    given = dict(build_args or {})
    state = _State(where, context_dir)
    global_args: dict[str, str | None] = {}
    stage_args: list[str] = []
    instructions = _instructions(text, where)

    def close_stage() -> None:
        if state.stages:
            last = state.stages[-1]
            state.stages[-1] = Stage(last.index, last.name, last.base, last.line, tuple(stage_args))

    for ins in instructions:
        if ins.cmd == "arg":
            for name, value in _arg_words(ins):
                if not state.stages:
                    resolved = given.get(name, value)
                    if resolved is not None and name not in given:
                        resolved = _resolve(state, ins.line, "ARG", resolved, global_args)
                    global_args[name] = resolved
                elif name not in stage_args:
                    stage_args.append(name)
        elif ins.cmd == "from":
            close_stage()
            stage_args = []
            _from(state, ins, global_args)
        elif ins.cmd == "run":
            _check_run_flags(state, ins.line, ins.flags)
        elif ins.cmd in ("copy", "add"):
            _copy(state, ins)
        elif ins.cmd == "onbuild":
            sub_cmd, sub_flags, _ = _split_command(ins.args)
            if sub_cmd == "run" and sub_flags:
                raise state.fail(
                    ins.line,
                    "ONBUILD RUN with flags is not allowed (it would run unchecked in a later "
                    "build)",
                )
    close_stage()
    if not state.stages:
        raise UnsafeDockerfile(f"{where} has no FROM instruction")
    _second_opinion(state, text, instructions)
    return DockerfilePlan(
        stages=tuple(state.stages),
        base_images=tuple(state.images),
        global_arg_names=tuple(global_args),
        cache_paths=tuple(path for path, _ in state.cache_paths),
        secret_run_lines=tuple(
            ins.line
            for ins in instructions
            if ins.cmd == "run" and any("type=secret" in flag.lower() for flag in ins.flags)
        ),
    )


SECRET_KEY_ARG = "SHIPYARD_SECRETS_KEY"
ARGS_KEY_LABEL = "org.shipyard.build-args-key"


def stage_args(plan: DockerfilePlan, build_args: Mapping[str, str]) -> dict[int, dict[str, str]]:
    """Per stage (its FROM line), the given values of the ARGs that stage declares."""
    found: dict[int, dict[str, str]] = {}
    for stage in plan.stages:
        given = {name: build_args[name] for name in stage.arg_names if name in build_args}
        if given:
            found[stage.line] = given
    return found


def with_args_key(text: str, stage_keys: Mapping[int, str]) -> str:
    """``text`` with ``LABEL org.shipyard.build-args-key=<key>`` right after the FROM of each
    stage in ``stage_keys`` (FROM line -> key).

    buildah 1.28 keys a LABEL/ENV/… step's cache by its unexpanded text, so a changed ARG
    value that no RUN uses reuses the old layer (upstream #5501). This step's literal text
    changes with the keyed digest of the stage's given ARG values: every later step of the
    stage is rebuilt exactly when one of them changes, and hits the cache otherwise."""
    if not stage_keys:
        return text
    lines = text.splitlines(keepends=True)
    for number in sorted(stage_keys, reverse=True):
        end = number - 1
        # A FROM continued over several lines: insert after its last one.
        while end < len(lines) - 1 and lines[end].rstrip("\r\n").endswith("\\"):
            end += 1
        if not lines[end].endswith("\n"):
            lines[end] += "\n"
        lines.insert(end + 1, f'LABEL {ARGS_KEY_LABEL}="{stage_keys[number]}"\n')
    return "".join(lines)


def with_secret_key(text: str, plan: DockerfilePlan) -> str:
    """``text`` with ``ARG SHIPYARD_SECRETS_KEY`` before every RUN that mounts a secret.

    buildah keys a RUN step's cache by its text and the ARGs in effect, not by the contents
    of its secret mounts: a changed secret would reuse the layer built with the old one. With
    this ARG set to a keyed digest of the build's secrets (``--build-arg``), such steps are
    rebuilt exactly when a secret changes. The digest is an HMAC: it says nothing of them."""
    if not plan.secret_run_lines:
        return text
    # Lines counted as the check and buildah count them (LF only): str.splitlines also ends
    # lines at FF, VT, NEL, U+2028..., which would put the ARG inside a continued RUN.
    lines = text.split("\n")
    for number in sorted(plan.secret_run_lines, reverse=True):
        lines.insert(number - 1, f"ARG {SECRET_KEY_ARG}")
    return "\n".join(lines)


def with_labels(text: str, labels: Mapping[str, str]) -> str | None:
    """``text`` with ``labels`` as ONE ``LABEL`` instruction after its last line: the last
    stage, where buildah puts ``--label``s too, but as one step (buildah makes a LABEL step,
    a commit, per ``--label``). None when that cannot be done safely — a value with a line
    break, or a text whose last instruction would swallow the new line (an open
    continuation): then pass ``--label``."""
    if not labels:
        return text
    words = []
    for key, value in sorted(labels.items()):
        if any(c in key + value for c in "\n\r"):
            return None
        words.append(f"{_label_word(key)}={_label_word(value)}")
    line = "LABEL " + " ".join(words)
    body = text if text.endswith("\n") or not text else text + "\n"
    result = f"{body}{line}\n"
    # Read back as buildah reads it: the new line must be an instruction of its own.
    try:
        last = list(_logical_lines(result, "Dockerfile"))[-1:]
    except UnsafeDockerfile:
        return None
    if last != [(body.count("\n") + 1, line)]:
        return None
    return result


def _label_word(value: str) -> str:
    """A double-quoted word that imagebuilder reads back as ``value``: no variable is
    expanded (``\\$``), quotes and backslashes are escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _arg_words(ins: Instruction) -> Iterator[tuple[str, str | None]]:
    """``ARG a=1 b``: (name, default or None); quotes removed as buildah's word splitter
    does. Words that are not ``name[=value]`` are left to buildah to complain about."""
    try:
        words = shlex.split(ins.args, comments=False, posix=True)
    except ValueError:
        words = _TOKEN_WHITESPACE.split(ins.args.strip())
    for word in words:
        name, has_value, value = word.partition("=")
        if _ARG_NAME.match(name):
            yield name, value if has_value else None


def _resolve(
    state: _State, line: int, what: str, word: str, values: Mapping[str, str | None]
) -> str:
    try:
        return _substitute(word, values)
    except _Unresolved as exc:
        raise state.fail(
            line,
            f"{what} {word!r} uses ${{{exc.args[0]}}}, which is not set by an ARG before the "
            "first FROM or a build argument",
        ) from None


def _from(state: _State, ins: Instruction, global_args: Mapping[str, str | None]) -> None:
    words = [w for w in _TOKEN_WHITESPACE.split(ins.args.strip()) if w]
    name: str | None = None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
    elif len(words) != 1:
        raise state.fail(ins.line, f"FROM {ins.args!r} is not FROM <image> [AS <name>]")
    base = _resolve(state, ins.line, "FROM", words[0], global_args)
    state.stages.append(Stage(len(state.stages), name, base, ins.line, ()))
    if base.isdigit():
        raise state.fail(ins.line, f"FROM {base} is not an image reference")
    state.reference(ins.line, "FROM", base)


def _copy(state: _State, ins: Instruction) -> None:
    for word in ins.flags:
        name, _, value = word.partition("=")
        if name.lower() == "--from":
            if not value or "$" in value:
                raise state.fail(
                    ins.line,
                    f"{ins.cmd.upper()} --from={value} is not allowed (give a stage or an "
                    "image, without variables)",
                )
            state.reference(ins.line, f"{ins.cmd.upper()} --from=", value)


def _second_opinion(state: _State, text: str, instructions: list[Instruction]) -> None:
    """Refuse a RUN whose flags dockerfile-parse reads differently (see the module doc)."""
    ours = {ins.line: ins.flags for ins in instructions if ins.cmd == "run"}
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    for item in parser.structure:
        if item["instruction"] != "RUN":
            continue
        _, flags = _extract_builder_flags(str(item["value"]))
        line = int(item["startline"]) + 1
        if flags and ours.get(line) != flags:
            raise state.fail(
                line,
                "the flags of this RUN are ambiguous (an empty line inside the instruction?); "
                "write the instruction without empty continuation lines",
            )


def onbuild_triggers(inspected: Mapping[str, object]) -> list[str]:
    """The ONBUILD triggers in a ``buildah inspect --type image`` document (docker format;
    the OCI format has none)."""
    docker = inspected.get("Docker")
    config = docker.get("config") if isinstance(docker, dict) else None
    triggers = config.get("OnBuild") if isinstance(config, dict) else None
    return [str(t) for t in triggers] if isinstance(triggers, list) else []


def check_triggers(image: str, triggers: Iterable[str], *, context_dir: Path) -> None:
    """buildah runs a base image's ONBUILD triggers as if they were lines of the Dockerfile:
    they get the same rules. Raises ``UnsafeDockerfile`` naming the image and trigger."""
    lines = [t for t in triggers if t.strip()]
    if not lines:
        return
    where = f"ONBUILD triggers of {image}"
    # imagebuilder joins the triggers with "\n" and parses them as a file of their own: a BOM
    # at its start is dropped and an escape directive in its leading comments applies. Read
    # them the same way (a non-default escape is refused) before adding the FROM line.
    joined = "\n".join(lines).removeprefix("\ufeff")
    try:
        for _ in _logical_lines(joined, where):
            break
        check_dockerfile(
            "FROM scratch\n" + joined + "\n",
            context_dir=context_dir,
            display_path=where,
        )
    except UnsafeDockerfile as exc:
        raise UnsafeDockerfile(f"base image {image} is refused: {exc.message}") from exc
