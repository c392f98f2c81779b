"""Who is this browser: an owner id from the session or Streamlit's XSRF cookie."""
from __future__ import annotations

import binascii
import hashlib
import re
import uuid
from typing import Any

import streamlit as st

XSRF_COOKIE = "_streamlit_xsrf"
_OWNER_RE = re.compile(r"[0-9a-z]{4,32}")


def xsrf_cookie() -> str | None:
    """This request's XSRF cookie, None without a request context (bare AppTest)."""
    try:
        cookie = st.context.cookies.get(XSRF_COOKIE)
    except Exception:
        return None
    return cookie if isinstance(cookie, str) else None


def owner_from_xsrf_cookie(cookie: str | None, digits: int = 8) -> str | None:
    """A stable per-browser id from Streamlit's XSRF cookie ("2|mask|masked token|time").

    The cookie is re-masked on every response but the token under the mask stays the same for
    the browser's session, in every tab. Only a hash of it is used, so the id reveals nothing
    about the token."""
    if not cookie:
        return None
    parts = cookie.strip("\"'").split("|")
    if len(parts) != 4 or parts[0] != "2":
        return None
    try:
        mask = binascii.a2b_hex(parts[1])
        masked = binascii.a2b_hex(parts[2])
    except (binascii.Error, ValueError):
        return None
    if not mask or not masked:
        return None
    token = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked))
    return hashlib.sha256(b"studio-owner:" + token).hexdigest()[:digits]


def valid_owner(value: Any) -> bool:
    return isinstance(value, str) and bool(_OWNER_RE.fullmatch(value))


def resolve_owner(session_owner: str | None, cookie: str | None, digits: int = 8) -> str:
    """Who is this browser? The session's id wins (it never changes under a running page), then
    the XSRF cookie (a reload, a new tab of the same browser), then a fresh random id (XSRF
    protection off, as in the page tests)."""
    if valid_owner(session_owner):
        return session_owner  # type: ignore[return-value]
    return owner_from_xsrf_cookie(cookie, digits) or uuid.uuid4().hex[:8]
