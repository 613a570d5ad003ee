"""Backups: one archive with a consistent database snapshot and the keys that unlock it."""
