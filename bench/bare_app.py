"""The API benchmark's baseline: a bare FastAPI endpoint on the same path that checks the
bearer token, parses the same body and does one equivalent SQL insert (one QUEUED row in the
same ``builds`` table of the same database, through the same engine settings), served by
uvicorn exactly as ``shipyard up`` serves Shipyard (``uvicorn.run(app, log_level="info")``).

``python -m bench.bare_app --database-url URL --port P --token T --workload-id N``
"""

from __future__ import annotations

import argparse
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import insert

from shipyard.store.db import make_engine
from shipyard.store.models import Build


class Body(BaseModel):
    branch: str | None = None
    sha: str | None = None


def create_app(database_url: str, token: str, workload_id: int) -> FastAPI:
    engine = make_engine(database_url)
    builds = Build.__table__
    app = FastAPI()

    @app.post("/v1/projects/{projectId}/services/{serviceId}/build")
    def start(
        projectId: str, serviceId: str, body: Body, authorization: str = Header("")
    ) -> dict[str, Any]:
        if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401)
        build_id = "bare-" + secrets.token_hex(8)
        created = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                insert(builds).values(
                    id=build_id,
                    workload_id=workload_id,
                    status="QUEUED",
                    concluded=False,
                    success=False,
                    source_kind="git",
                    branch=body.branch,
                    sha=body.sha,
                    requested_sha=body.sha,
                    created_at=created,
                    attempt=0,
                    abort_requested=False,
                )
            )
        return {"data": {"id": build_id, "status": "QUEUED", "concluded": False,
                         "createdAt": created.isoformat()}}  # fmt: skip

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--workload-id", type=int, required=True)
    args = parser.parse_args()
    app = create_app(args.database_url, args.token, args.workload_id)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
