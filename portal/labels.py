"""Words for identifiers: alert kinds, audit operations, job kinds and states.

Pages never show a raw identifier such as ``operation_refused``: the ``label`` filter
(portal/templatetags/holdfast.py) looks it up here, and an identifier nobody has named yet
reads as a sentence made from its words, so a new kind is never shown raw.
"""

from __future__ import annotations

LABELS: dict[str, str] = {}


def label(identifier: str | None) -> str:
    if not identifier:
        return ""
    text = str(identifier)
    if text in LABELS:
        return LABELS[text]
    words = text.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]
