"""``shipyard gc [--dry-run]``: run a garbage collection on the server and print what it
freed (or would free), per service."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.text import Text

from shipyard.cli import config
from shipyard.cli.options import OutputOpt, Token, Url
from shipyard.cli.output import Output, emit_json, stderr, stdout
from shipyard.cli.safe import text
from shipyard.gc.retention import format_bytes

# A collection restarts the registry and walks every store: minutes on a large host.
_TIMEOUT_S = 3600.0


def _admin_token(token: str | None) -> str | None:
    """``--token`` / SHIPYARD_TOKEN / the login, else the server's own admin token file when
    this runs on the server's machine."""
    resolved = config.resolve(None, token).token
    if resolved:
        return resolved
    from shipyard.settings import Settings

    path = Settings().data_dir / "admin-token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be collected and freed")
    ] = False,
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", min=1, help="Images kept per service, for this run"),
    ] = None,
    keep_days: Annotated[
        float | None,
        typer.Option("--keep-days", min=0, help="Keep builds younger than this, for this run"),
    ] = None,
    output: OutputOpt = Output.TEXT,
    url: Url = None,
    token: Token = None,
) -> None:
    """Apply the image retention policy now: delete old images from the registry and the
    build stores (needs the admin token). --keep-last / --keep-days replace the server's
    SHIPYARD_GC_KEEP_LAST / _DAYS for this run; a service's own retention still wins."""
    cfg = config.resolve(url, token)
    admin = _admin_token(token)
    if not admin:
        stderr.print("[red]No token:[/] pass --token (the admin token) or set SHIPYARD_TOKEN.")
        raise typer.Exit(2)
    try:
        response = httpx.post(
            f"{cfg.url}/v1/gc",
            params={
                "dryRun": str(dry_run).lower(),
                **({"keepLast": keep_last} if keep_last is not None else {}),
                **({"keepDays": keep_days} if keep_days is not None else {}),
            },
            headers={"Authorization": f"Bearer {admin}"},
            timeout=_TIMEOUT_S,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        stderr.print(Text.assemble(("Error (connection): ", "red"), text(str(exc))))
        raise typer.Exit(1) from None
    body: dict[str, Any] = response.json() if response.content else {}
    if response.status_code != 200:
        message = (body.get("error") or {}).get("message") or response.text
        stderr.print(
            Text.assemble((f"Error (HTTP {response.status_code}): ", "red"), text(message))
        )
        raise typer.Exit(1)
    report: dict[str, Any] = body["data"]
    if output is Output.JSON:
        emit_json(report)
    else:
        show_report(report)
    if report.get("errors"):
        raise typer.Exit(1)


def show_report(report: dict[str, Any]) -> None:
    dry = bool(report.get("dryRun"))
    verb = "would collect" if dry else "collected"
    services = report.get("services") or []
    if not services:
        stdout.out("No image is past its retention.", highlight=False)
    for s in services:
        stdout.out(
            f"{s['projectId']}/{s['id']}: {verb} {len(s['collected'])} build(s), kept "
            f"{s['kept']} (keep-last {s['keepLast']}, keep-days {s['keepDays']:g}), "
            f"registry ~{format_bytes(s['registryBytes'])}",
            highlight=False,
        )
        for build_id in s["collected"]:
            stdout.out(f"  {build_id}", highlight=False)
    registry = report.get("registry") or {}
    before, after = int(registry.get("bytesBefore", 0)), int(registry.get("bytesAfter", 0))
    if before:
        freed = "" if dry else f", freed {format_bytes(max(0, before - after))}"
        stdout.out(f"registry: {format_bytes(after)} on disk{freed}", highlight=False)
    for store in report.get("stores") or []:
        store_freed = max(0, int(store["bytesBefore"]) - int(store["bytesAfter"]))
        line = (
            f"store of {store['projectId']}: {format_bytes(store['bytesAfter'])}"
            f"{'' if dry else ', freed ' + format_bytes(store_freed)}"
            f", {len(store['imagesRemoved'])} image(s) {'to remove' if dry else 'removed'}"
        )
        if store.get("emptied"):
            line += " (emptied: over SHIPYARD_GC_STORE_BUDGET_GB)"
        stdout.out(line, highlight=False)
    if report.get("logs"):
        stdout.out(f"logs: {report['logs']}", highlight=False)
    if report.get("uploadsRemoved"):
        stdout.out(
            f"uploads: {report['uploadsRemoved']} orphaned upload(s) removed", highlight=False
        )
    for error in report.get("errors") or []:
        stderr.print(Text.assemble(("error: ", "red"), text(error)))
