"""Alembic environment: runs on the connection handed in by ``shipyard.store.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from shipyard.store.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    # `alembic revision --autogenerate` from the command line: use SHIPYARD_DATABASE_URL.
    from shipyard.settings import Settings

    engine = create_engine(Settings().resolved_database_url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
