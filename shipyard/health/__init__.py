"""Liveness and readiness for systemd and load balancers (issue 11, item 8)."""
