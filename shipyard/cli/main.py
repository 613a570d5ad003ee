"""``shipyard``: run the service (``up``) and administer it (``tokens``, ``registry``, ``gc``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from shipyard.builds.permissions import ALL, Permission
from shipyard.cli import backup as backup_cmds
from shipyard.cli import builds, gc, images, registry, resources, upload, workers
from shipyard.cli import tokens as token_cmds
from shipyard.cli import webhooks as webhook_cmds
from shipyard.cli import worker as worker_cmd
from shipyard.cli.startup import require_postgres, start_process
from shipyard.settings import Settings, prepare

app = typer.Typer(
    help="Shipyard: container builds behind Northflank's v1 build API.", no_args_is_help=True
)
tokens = typer.Typer(
    help="API tokens (create: on the server's machine; list, revoke: with the admin token).",
    no_args_is_help=True,
)
tokens.command("list")(token_cmds.tokens_list)
tokens.command("revoke")(token_cmds.tokens_revoke)
app.add_typer(builds.start_app, name="start")
app.add_typer(builds.get_app, name="get")
app.add_typer(builds.list_app, name="list")
app.add_typer(builds.abort_app, name="abort")
app.add_typer(builds.logs_app, name="logs")
app.add_typer(resources.create_app, name="create")
app.add_typer(tokens, name="tokens")
app.add_typer(registry.registry_app, name="registry")
app.add_typer(images.images_app, name="images")
app.command()(resources.login)
app.command("gc")(gc.gc)
app.command("workers")(workers.workers)
app.command("worker")(worker_cmd.worker)
app.command("build")(upload.build)
app.command("backup")(backup_cmds.backup)
app.command("restore")(backup_cmds.restore)
app.command("deliveries")(webhook_cmds.deliveries)
app.command("webhook")(webhook_cmds.webhook)
console = Console(stderr=True)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Listen address (SHIPYARD_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (SHIPYARD_PORT)")] = None,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--with-worker",
            help="SHIPYARD_EXECUTOR=procrastinate: run a build worker in this process too",
        ),
    ] = False,
) -> None:
    """Run the API, the local build executor and the embedded registry (with
    SHIPYARD_EXECUTOR=procrastinate: the API and the registry; builds run in `shipyard worker`
    processes, or here with --with-worker)."""
    from functools import partial

    from shipyard.api.app import create_app
    from shipyard.api.server import serve
    from shipyard.backup import running
    from shipyard.executors.runtime import executor_for

    configured = start_process(console)
    if with_worker and configured.executor != "procrastinate":
        console.print("--with-worker needs SHIPYARD_EXECUTOR=procrastinate")
        raise typer.Exit(2)
    if configured.executor == "procrastinate":
        require_postgres(configured, console)
    token_file = configured.data_dir / "admin-token"
    # Printed once, when generated: a terminal's scrollback or a journal is no place to keep it.
    generated = configured.admin_token is None and not token_file.exists()
    settings = prepare(configured)
    if host is not None or port is not None:
        settings = settings.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
    # Held until exit: `shipyard restore` refuses to overwrite the data of a running server.
    running.hold(settings.data_dir)
    application = create_app(settings, partial(executor_for, with_worker=with_worker))
    assert settings.admin_token is not None
    console.print(
        f"[bold]Shipyard[/] on http://{settings.host}:{settings.port}  (data: {settings.data_dir})"
    )
    if generated:
        console.print(
            f"Admin token (generated; shown this once): {settings.admin_token.get_secret_value()}"
            f"  (saved in {settings.data_dir / 'admin-token'})",
            soft_wrap=True,
        )
    elif configured.admin_token is not None:
        console.print("Admin token: from SHIPYARD_ADMIN_TOKEN")
    else:
        console.print(f"Admin token: in {settings.data_dir / 'admin-token'}", soft_wrap=True)
    if not settings.registry:
        where = (
            f"listening on {settings.registry_listen}, tokens at {settings.public_url}"
            if settings.registry_listen != "127.0.0.1"
            else "embedded"
        )
        console.print(f"Registry: 127.0.0.1:{settings.registry_port} ({where})", markup=False)
        if settings.registry_listen != "127.0.0.1" and settings.public_url is None:
            # Workers elsewhere reach the registry but would be sent to 127.0.0.1 for tokens.
            console.print(
                "warning: SHIPYARD_REGISTRY_LISTEN without SHIPYARD_PUBLIC_URL: the registry "
                "sends every client to 127.0.0.1 for tokens (docs/workers.md)",
                markup=False,
            )
    if settings.build_network == "host":
        console.print(
            "[bold red]WARNING[/]: SHIPYARD_BUILD_NETWORK=host: RUN steps share the host's "
            "network and reach every service on it (see SECURITY.md)"
        )
    serve(application, settings.host, settings.port)


@tokens.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="A label for the token")],
    project: Annotated[str | None, typer.Option(help="Limit the token to one project")] = None,
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="Repeatable; default: all")
    ] = None,
) -> None:
    """Create an API token (printed once; only its hash is stored)."""
    from shipyard.store import tokens as token_store
    from shipyard.store.db import make_engine, make_sessionmaker, migrate

    chosen = permission or [p.value for p in ALL]
    known = {p.value for p in Permission}
    unknown = [p for p in chosen if p not in known]
    if unknown:
        console.print(f"[red]unknown permission(s):[/] {', '.join(unknown)}")
        raise typer.Exit(2)
    settings = prepare(Settings())
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        row, token = token_store.create(session, name=name, permissions=chosen, project_id=project)
        session.commit()
    print(
        json.dumps(
            {"name": row.name, "token": token, "projectId": project, "permissions": row.permissions}
        )
    )


if __name__ == "__main__":
    app()
