"""Server data reaches the terminal only as inert text.

Log lines and build messages are written by whoever controls a Dockerfile: an escape
sequence in them would drive the user's terminal (``ESC ] 0 ; title BEL`` retitles it,
``ESC [ 2 J`` clears it, OSC 52 writes the clipboard), and Rich markup in them would be
interpreted (``[/]`` raised ``MarkupError`` and ended ``--follow``). So every string from
the server goes through ``clean`` (escape sequences and control characters removed, tab
kept) and is rendered as a ``Text`` (never parsed as markup), or ``escape``d where it is
embedded in markup of our own.
"""

from __future__ import annotations

import re

from rich.markup import escape as _escape_markup
from rich.text import Text

# Linear-time by construction (no nested quantifiers), so a hostile line costs O(length).
_SEQUENCES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?     # CSI (7- and 8-bit)
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f]) [^\x07\x1b\x9c]*       # OSC, DCS, SOS, PM, APC …
      (?:\x07|\x1b\\|\x9c)?                                     # … up to BEL or ST
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                              # other ESC sequences
    """,
    re.VERBOSE,
)
# C0 except tab, DEL, C1; what is left after the sequences are gone.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tab kept)."""
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def text(value: object, style: str = "") -> Text:
    """Server data as a renderable that is never parsed as markup."""
    return Text(clean(str(value)), style=style)


def escape(value: object) -> str:
    """Server data to embed in a markup string of ours."""
    return _escape_markup(clean(str(value)))
