#!/usr/bin/env python3
"""Wait until Shipyard's ``GET /readyz`` answers 200 (stdlib only: runs before and without
the venv). systemd's ``ExecStartPost`` in deploy/shipyard.service: ``systemctl start`` returns
once Shipyard can take builds, and units ordered ``After=shipyard.service`` start then.

    wait-ready.py [--timeout 90] [--once]

Reads ``SHIPYARD_HOST`` / ``SHIPYARD_PORT`` like the server (0.0.0.0 is asked on 127.0.0.1).
Exit 0 when ready; 1 with the failing checks on stderr when not ready in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def probe(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--once", action="store_true", help="probe once (monitoring)")
    args = parser.parse_args()
    host = os.environ.get("SHIPYARD_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{os.environ.get('SHIPYARD_PORT', '8000')}/readyz"
    deadline = time.monotonic() + args.timeout
    while True:
        status, body = probe(url)
        if status == 200:
            return 0
        if args.once or time.monotonic() > deadline:
            try:
                failing = json.loads(body).get("checks", {})
                why = "; ".join(
                    f"{name}: {c.get('message', '')}" for name, c in failing.items() if not c["ok"]
                )
            except (ValueError, AttributeError, KeyError, TypeError):
                why = body[:300]
            print(f"shipyard not ready ({url} -> {status or 'no answer'}): {why}", file=sys.stderr)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
