"""Persistence: SQLAlchemy models, repositories that own the queries, Alembic migrations."""
