"""Executors run queued builds: ``local`` (in-process pool) now, ``procrastinate`` to scale out."""
