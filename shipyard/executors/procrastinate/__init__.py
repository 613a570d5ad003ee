"""Scale-out build workers: procrastinate jobs on Shipyard's own PostgreSQL (docs/workers.md)."""
