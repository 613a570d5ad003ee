"""HTTP transport: FastAPI routers, request/response schemas, auth and error mapping."""
