"""Prometheus metrics: what a worker process measures as it runs builds (``worker``) and what
the database says about the whole fleet (``fleet``)."""
