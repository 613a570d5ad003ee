"""The web dashboard: server-rendered pages (Jinja2 + htmx) and a little JavaScript, served
by Shipyard itself from assets inside this package (no CDN at run time)."""
