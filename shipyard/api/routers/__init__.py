"""Thin routers: parse, authorise, call the domain, shape the response."""
