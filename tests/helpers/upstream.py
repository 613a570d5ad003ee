"""A real upstream repository to push to: a bare repo (file:// URL) and a work clone."""

from __future__ import annotations

import subprocess
from pathlib import Path

_ENV_ARGS = ("-c", "user.name=Mona", "-c", "user.email=mona@example.com",
             "-c", "init.defaultBranch=main")  # fmt: skip


class Upstream:
    def __init__(self, root: Path) -> None:
        self.bare = root / "upstream.git"
        self.work = root / "work"
        subprocess.run(["git", *_ENV_ARGS, "init", "-q", "--bare", str(self.bare)], check=True)
        subprocess.run(["git", *_ENV_ARGS, "init", "-q", str(self.work)], check=True)
        self.url = self.bare.resolve().as_uri()

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", *_ENV_ARGS, *args], cwd=self.work, check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    def commit(self, files: dict[str, str], message: str, branch: str = "main") -> str:
        """Commit ``files`` on ``branch`` (created from the current HEAD if new), push it;
        returns the new sha."""
        existing = self._has_head() and bool(self.git("branch", "--list", branch))
        self.git("checkout", "-q", *(() if existing else ("-b",)), branch)
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.git("add", path)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "--force", str(self.bare), f"{branch}:{branch}")
        return self.git("rev-parse", "HEAD")

    def set_ref(self, ref: str, sha: str) -> None:
        subprocess.run(["git", "update-ref", ref, sha], cwd=self.bare, check=True)

    def _has_head(self) -> bool:
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=self.work,
                              capture_output=True)  # fmt: skip
        return done.returncode == 0
