"""Jinja filters: times, durations, shas and statuses as people read them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# Status -> colour class of its badge.
_TONE = {
    "SUCCESS": "ok",
    "FAILURE": "bad",
    "SUBMISSION_FAILURE": "bad",
    "CRASHED": "bad",
    "ABORTED": "muted",
    "QUEUED": "wait",
    "PENDING": "wait",
    "UNSCHEDULABLE": "wait",
}


def tone(status: str) -> str:
    return _TONE.get(status, "run")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds:.1f}s" if seconds >= 0.05 else "0s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def when(value: str | datetime | None) -> str:
    """An API timestamp (ISO) or a datetime, as ``2026-12-04 17:50:12 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def short_sha(sha: Any) -> str:
    return str(sha)[:8] if sha else ""


_PROVIDERS = {"github": "GitHub", "gitlab": "GitLab", "gitea": "Gitea", "forgejo": "Forgejo"}


def provider_name(provider: Any) -> str:
    return _PROVIDERS.get(str(provider).lower(), str(provider))


def trigger_of(build: dict[str, Any]) -> dict[str, Any]:
    """The build's ``trigger`` (webhooks add it); builds without one were started by the API."""
    trigger = build.get("trigger")
    if not isinstance(trigger, dict) or trigger.get("type") != "webhook":
        return {"type": "api", "label": "API"}
    provider = provider_name(trigger.get("provider") or "webhook")
    return {
        "type": "webhook",
        "label": f"webhook · {provider}",
        "delivery": trigger.get("deliveryId"),
    }


FILTERS = {
    "tone": tone,
    "duration": duration,
    "when": when,
    "iso": iso,
    "short_sha": short_sha,
    "provider_name": provider_name,
}
