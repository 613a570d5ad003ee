"""The seed pages' start-build examples (Northflank API docs, "Start job build" /
"Start service build"), kept verbatim, and a repository whose build shows what a build of them
received: the build file copied into the image, the secret mount's SHA-256 (never the value)
written to the image and printed by a RUN step, and the build arguments."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.images import BUSYBOX_IMAGE
from tests.helpers.sample_app import _git

SEED_SHA = "262ed9817b3cad5142fbceabe0c9e371e390d616"
# "Start job build", example request "Start a build with overrides for the current settings",
# the --data argument byte for byte.
JOB_OVERRIDES_EXAMPLE = '{"sha":"262ed9817b3cad5142fbceabe0c9e371e390d616","overrides":{"buildArguments":{"ARGUMENT_1":"abcdef","ARGUMENT_2":"12345"},"buildFiles":{"/dir/fileName":{"data":"VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU=","encoding":"utf-8"}},"dockerSecretMounts":{"example-secret-mount_1":{"data":"VGhpcyBpcyBhbiBleGFtcGxlIHdpdGggYSB0ZW1wbGF0ZWQgJHtOT0RFX0VOVn0gdmFyaWFibGU=","encoding":"utf-8"}},"docker":{"dockerFilePath":"/Dockerfile","dockerWorkDir":"/"}}}'
# "Start job build", example request "Start a build with the current settings".
JOB_PLAIN_EXAMPLE = '{"sha":"262ed9817b3cad5142fbceabe0c9e371e390d616"}'
# The decoded data: "${NODE_ENV}" is Northflank's dynamic templating from the build arguments.
DECODED = "This is an example with a templated ${NODE_ENV} variable"
NODE_ENV = "production"
TEMPLATED = DECODED.replace("${NODE_ENV}", NODE_ENV)

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
ARG ARGUMENT_1
ARG ARGUMENT_2
ARG NODE_ENV
COPY dir/fileName /out/fileName
RUN --mount=type=secret,id=example-secret-mount_1 \\
    sha256sum < /run/secrets/example-secret-mount_1 | cut -d' ' -f1 > /out/mount.sha256 \\
    && echo "mount-sha256=$(cat /out/mount.sha256)" \\
    && echo "file-sha256=$(sha256sum < /out/fileName | cut -d' ' -f1)" \\
    && echo "ARGUMENT_1=$ARGUMENT_1 ARGUMENT_2=$ARGUMENT_2" > /out/args
"""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def with_sha(example: str, sha: str) -> str:
    """The example with only its sha replaced by a real commit."""
    assert example.count(SEED_SHA) == 1
    return example.replace(SEED_SHA, sha)


def seed_overrides() -> dict[str, Any]:
    """The example's overrides object, as sent (for GET build-arguments comparisons)."""
    overrides: dict[str, Any] = json.loads(JOB_OVERRIDES_EXAMPLE)["overrides"]
    return overrides


@dataclass(frozen=True)
class SeedRepo:
    url: str
    sha: str


def make_seed_repo(root: Path) -> SeedRepo:
    work, bare = root / "seed-work", root / "seed.git"
    work.mkdir(parents=True)
    _git(root, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    _git(work, "init", "-q", "--initial-branch=main")
    (work / "Dockerfile").write_text(DOCKERFILE)
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "seed")
    _git(work, "push", "-q", str(bare), "main")
    return SeedRepo(url=f"file://{bare}", sha=_git(work, "rev-parse", "HEAD"))


def expected_files(templated: bool) -> dict[str, bytes]:
    text = TEMPLATED if templated else DECODED
    return {
        "out/fileName": text.encode(),
        "out/mount.sha256": (sha256(text) + "\n").encode(),
        "out/args": b"ARGUMENT_1=abcdef ARGUMENT_2=12345\n",
    }
