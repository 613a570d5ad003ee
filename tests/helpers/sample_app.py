"""A small application repository for end-to-end builds: a multi-stage Dockerfile on the local
busybox base, build args, a build file, a secret mount, another Dockerfile in a sub dir."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.images import BUSYBOX_IMAGE

SECRET_VALUE = "s3cr3t-mount-value-7f1c"
# The Dockerfile holds only a digest: its own text ends up in the image history.
SECRET_SHA256 = hashlib.sha256(SECRET_VALUE.encode()).hexdigest()

DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE} AS base
ARG GREETING=hello
ENV GREETING=$GREETING
LABEL org.shipyard.test="yes"
COPY app.txt /app/app.txt
RUN --mount=type=secret,id=token if [ -f /run/secrets/token ]; then \\
      test "$(sha256sum < /run/secrets/token | cut -d' ' -f1)" = "{SECRET_SHA256}" \\
        && echo secret-ok > /app/secret-check; \\
    else echo no-secret > /app/secret-check; fi

FROM base AS final
COPY config/ /app/config/
RUN echo "built with $GREETING" > /app/greeting

FROM base AS slow
RUN sleep 300
"""

SUB_DOCKERFILE = f"""\
FROM {BUSYBOX_IMAGE}
COPY . /sub/
RUN ls /sub > /sub-listing
"""


@dataclass(frozen=True)
class SampleApp:
    url: str
    main_sha: str
    feature_sha: str
    pr_sha: str


def _git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
    }  # fmt: skip
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return out.stdout.decode().strip()


def make_sample_app(root: Path) -> SampleApp:
    work = root / "sample-app"
    bare = root / "sample-app.git"
    work.mkdir(parents=True)
    _git(root, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    _git(work, "init", "-q", "--initial-branch=main")
    (work / "Dockerfile").write_text(DOCKERFILE)
    (work / "app.txt").write_text("v1\n")
    (work / "config").mkdir()
    (work / "config" / "settings.ini").write_text("[app]\n")
    (work / "sub").mkdir()
    (work / "sub" / "Dockerfile.custom").write_text(SUB_DOCKERFILE)
    (work / "sub" / "hello.txt").write_text("hi\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "initial")
    main_sha = _git(work, "rev-parse", "HEAD")
    _git(work, "checkout", "-qb", "feature")
    (work / "app.txt").write_text("feature\n")
    _git(work, "commit", "-qam", "feature")
    feature_sha = _git(work, "rev-parse", "HEAD")
    (work / "app.txt").write_text("pr\n")
    _git(work, "commit", "-qam", "pr")
    pr_sha = _git(work, "rev-parse", "HEAD")
    _git(work, "push", "-q", str(bare), "main", f"{feature_sha}:refs/heads/feature")
    _git(work, "push", "-q", str(bare), "HEAD:refs/pull/5/head")
    return SampleApp(
        url=f"file://{bare}", main_sha=main_sha, feature_sha=feature_sha, pr_sha=pr_sha
    )
