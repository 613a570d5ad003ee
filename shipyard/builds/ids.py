"""Build ids in Northflank's style: ``adjective-noun-NNNN``."""

from __future__ import annotations

import re
import secrets

ADJECTIVES = (
    "able", "agile", "amber", "ancient", "bold", "brave", "bright", "brisk", "calm", "clever",
    "cosmic", "crimson", "crisp", "curious", "daring", "dusty", "eager", "early", "fancy", "fierce",
    "gentle", "glad", "golden", "grand", "happy", "hidden", "humble", "icy", "jolly", "joyous",
    "keen", "kind", "lively", "lucky", "mellow", "merry", "mighty", "misty", "noble", "patient",
    "plucky", "polite", "proud", "quick", "quiet", "rapid", "rustic", "shiny", "silent", "smooth",
    "snowy", "solid", "spry", "steady", "sunny", "swift", "tidy", "vivid", "warm", "witty",
)
NOUNS = (
    "anchor", "beacon", "berth", "bow", "breeze", "buoy", "cabin", "canal", "cargo", "compass",
    "current", "deck", "dock", "ferry", "fjord", "galley", "harbor", "hull", "island", "jetty",
    "keel", "lagoon", "lantern", "mast", "marina", "oar", "ocean", "pier", "port", "quay",
    "reef", "rudder", "sail", "schooner", "shore", "sloop", "sound", "star", "stern", "strait",
    "tide", "view", "voyage", "wake", "wave", "wharf", "wind", "yacht", "yard", "zephyr",
)

BUILD_ID_PATTERN = re.compile(r"^[a-z]+-[a-z]+-\d{4}$")


def new_build_id() -> str:
    """A random id; uniqueness is the store's job (it retries on a clash)."""
    return "-".join(
        (
            secrets.choice(ADJECTIVES),
            secrets.choice(NOUNS),
            f"{secrets.randbelow(10000):04d}",
        )
    )


def slugify(name: str) -> str:
    """Northflank derives resource ids from names: lower-case, dashes, no edge dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:64].strip("-")
