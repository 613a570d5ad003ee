"""Request and response shapes of the v1 API (Northflank-compatible)."""
