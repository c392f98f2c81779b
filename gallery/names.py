"""Display strings from untrusted input (upload names, titles, tags).

Stored files are never named from these; they only ever appear as text, so the job here is to
keep them readable and harmless when shown: no control or bidi-override characters (which can
make "gpj.exe" look like "exe.jpg"), no directory parts, bounded length.
"""
from __future__ import annotations

import re
import unicodedata

MAX_NAME = 100
MAX_TITLE = 200
MAX_TAGS = 500

# Cc: control characters; Cf: format characters, which include the bidi overrides and isolates
# (U+202A-U+202E, U+2066-U+2069) and zero-width characters; Zl/Zp: line/paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}


def clean_text(text: str, limit: int) -> str:
    """One line of visible text, at most `limit` characters."""
    text = unicodedata.normalize("NFC", str(text))
    text = "".join(" " if ch.isspace() else ch for ch in text if unicodedata.category(ch) not in _INVISIBLE or ch.isspace())
    return re.sub(r" +", " ", text).strip()[:limit].strip()


def display_name(name: str, fallback: str = "image") -> str:
    """The last path component of an upload's name, cleaned, at most MAX_NAME characters
    (the extension is kept when the stem is cut)."""
    text = clean_text(re.split(r"[/\\]", str(name))[-1], 10 * MAX_NAME)
    text = text.lstrip(". ")  # no "..", no hidden-file look
    if not text:
        return fallback
    if len(text) <= MAX_NAME:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and stem and len(ext) <= 10:
        return stem[: MAX_NAME - len(ext) - 1].rstrip() + "." + ext
    return text[:MAX_NAME].rstrip()


def clean_tags(tags: str | list[str] | tuple[str, ...]) -> str:
    """Tags as one comma-separated string: trimmed, without empties or repeats, order kept."""
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    by_key: dict[str, str] = {}
    for item in items:
        tag = clean_text(item, MAX_TAGS).replace(",", " ").strip()
        if tag:
            by_key.setdefault(tag.lower(), tag)
    return ", ".join(by_key.values())[:MAX_TAGS].rstrip(", ")
