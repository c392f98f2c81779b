"""Share mode (`make share`): the studio on the lab network, behind a password.

Local use (`make run`, 127.0.0.1 only) needs none of this, and nothing here changes it: every
check below passes unless STUDIO_SHARE=1. In share mode

- the password comes from $STUDIO_PASSWORD or st.secrets["password"]; without one the studio
  refuses to start, both before the server starts (`python -m app_pages.auth`, run by
  `make share`) and inside the app, should someone start it by hand;
- nothing but the sign-in page answers a browser that has not signed in: app_pages/gate.py, a
  layer in front of Streamlit's own server (server.py), checks every request, websocket, upload,
  media file and component for a sign-in, and signs people in and out;
- a sign-in is a random token in an HttpOnly cookie, kept here (SESSIONS) for a day
  ($STUDIO_SESSION_HOURS); signing out ends it in every tab of that browser;
- wrong passwords are slowed down per client address and for the whole server (THROTTLE);
  the address is the connection's own unless $STUDIO_PROXY says a proxy in front sets
  X-Forwarded-For;
- a person cancels, deletes and edits only their own runs, unless they signed in with
  $STUDIO_ADMIN_PASSWORD (or st.secrets["admin_password"]).
"""
from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from gallery import Gallery

SHARE_ENV = "STUDIO_SHARE"
PASSWORD_ENV = "STUDIO_PASSWORD"
ADMIN_ENV = "STUDIO_ADMIN_PASSWORD"
PROXY_ENV = "STUDIO_PROXY"
FORWARDED_ENV = "FORWARDED_ALLOW_IPS"  # uvicorn's: whose X-Forwarded-For it believes
SESSION_HOURS_ENV = "STUDIO_SESSION_HOURS"
SESSION_COOKIE = "studio_session"
USER, ADMIN = "user", "admin"

# Wrong passwords: the first few a client makes are free (typos), then each waits twice as long,
# up to a minute. All clients together get GLOBAL_GUESSES a minute, so many addresses guess no
# faster than that.
FREE_ATTEMPTS = 3
MAX_WAIT_S = 60.0
GLOBAL_GUESSES = 30
GLOBAL_WINDOW_S = 60.0
# Clients whose wrong guesses are remembered; the oldest are forgotten first.
MAX_CLIENTS = 10_000
# Sign-ins kept at once, and per client address: a colleague who knows the password can fill
# their own share, never push anyone else out.
MAX_SESSIONS = 10_000
SESSIONS_PER_CLIENT = 50
DEFAULT_SESSION_HOURS = 24.0


class NotAllowed(PermissionError):
    """Someone else's run; the message says who may change it."""


# --- configuration ----------------------------------------------------------------------------

def share_mode() -> bool:
    return os.environ.get(SHARE_ENV, "").strip().lower() in ("1", "true", "yes")


def _secret(name: str) -> str | None:
    try:
        value = st.secrets.get(name)
    except Exception:  # no secrets.toml anywhere (the usual case), or a malformed one
        return None
    return str(value) if value not in (None, "") else None


def passwords() -> tuple[str | None, str | None]:
    """(the password everyone uses, the admin password); None where not set."""
    user = os.environ.get(PASSWORD_ENV) or _secret("password")
    admin = os.environ.get(ADMIN_ENV) or _secret("admin_password")
    return user, admin


def _xsrf_on() -> bool:
    return bool(st.get_option("server.enableXsrfProtection"))


def share_problem() -> str | None:
    """Why share mode must not start, or None when it may (and always None outside share mode)."""
    if not share_mode():
        return None
    user, admin = passwords()
    if not user or not user.strip():
        return (f"Share mode needs a password, and none is set. Set {PASSWORD_ENV} "
                f"(e.g. `{PASSWORD_ENV}=... make share`) or put `password = \"...\"` in "
                ".streamlit/secrets.toml, then start again. To use the studio on this computer "
                "only, run `make run` instead.")
    if admin is not None and hmac.compare_digest(admin.encode(), user.encode()):
        return f"{ADMIN_ENV} must differ from the password everyone uses, or everyone is an admin."
    if not _xsrf_on():
        return ("Share mode needs XSRF protection: remove server.enableXsrfProtection = false "
                "from the Streamlit configuration.")
    if not behind_proxy() and os.environ.get(FORWARDED_ENV) != "":
        # The server (uvicorn) takes the client's address from X-Forwarded-For when the
        # connection comes from 127.0.0.1 unless this is empty: anyone through an SSH tunnel
        # could then claim any address, and guess passwords under each.
        return (f"Share mode needs {FORWARDED_ENV} set and empty, so that no X-Forwarded-For header "
                f"is believed (`make share` sets it). Behind an HTTPS proxy that overwrites that header, "
                f"set {PROXY_ENV}=1 instead.")
    return None


def behind_proxy() -> bool:
    """$STUDIO_PROXY: a reverse proxy in front sets X-Forwarded-For (and overwrites any the
    client sent), so the server may take the client's address from it."""
    return os.environ.get(PROXY_ENV, "").strip().lower() in ("1", "true", "yes")


def role_for(given: str) -> str | None:
    """ADMIN, USER or None for a typed password. Both comparisons always run, in constant time."""
    user, admin = passwords()
    typed = given.encode()
    is_user = hmac.compare_digest(typed, user.encode()) if user else False
    is_admin = hmac.compare_digest(typed, admin.encode()) if admin else False
    return ADMIN if is_admin else USER if is_user else None


# --- slowing down guesses -----------------------------------------------------------------------

class Throttle:
    """Wrong attempts per client: FREE_ATTEMPTS free, then a wait doubling from 1 s to MAX_WAIT_S;
    and for all clients together at most GLOBAL_GUESSES in any GLOBAL_WINDOW_S, after which
    everyone waits (a stranger can delay others' sign-in this way, never guess faster). Shared
    by every request of the process, so a new connection does not reset it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS,
                 global_guesses: int = GLOBAL_GUESSES, window: float = GLOBAL_WINDOW_S):
        self._clock = clock
        self._max = max_clients
        self._window = window
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # client -> (count, next try)
        self._recent: collections.deque[float] = collections.deque(maxlen=global_guesses)  # times of wrong guesses

    def wait_seconds(self, client: str) -> float:
        with self._lock:
            _, next_try = self._failures.get(client, (0, 0.0))
            now = self._clock()
            everyone = self._recent[0] + self._window - now if len(self._recent) == self._recent.maxlen else 0.0
            return max(0.0, next_try - now, everyone)

    def failed(self, client: str) -> float:
        """Records a wrong attempt; returns how long this client must now wait."""
        with self._lock:
            count = self._failures.pop(client, (0, 0.0))[0] + 1
            wait = 0.0 if count <= FREE_ATTEMPTS else min(MAX_WAIT_S, 2.0 ** (count - FREE_ATTEMPTS - 1))
            self._failures[client] = (count, self._clock() + wait)
            self._recent.append(self._clock())
            while len(self._failures) > self._max:
                self._failures.popitem(last=False)
        return self.wait_seconds(client)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


# --- sign-ins -----------------------------------------------------------------------------------

def session_seconds() -> float:
    """How long a sign-in lasts: $STUDIO_SESSION_HOURS (a day by default)."""
    try:
        hours = float(os.environ.get(SESSION_HOURS_ENV, DEFAULT_SESSION_HOURS))
    except ValueError:
        hours = DEFAULT_SESSION_HOURS
    return max(60.0, hours * 3600) if hours == hours else DEFAULT_SESSION_HOURS * 3600


@dataclass(frozen=True)
class Session:
    role: str
    client: str
    expires: float


class Sessions:
    """Signed-in browsers by their cookie's token (kept only as a hash), each with its role and
    expiry. Bounded twice: SESSIONS_PER_CLIENT per address (that client's oldest goes first) and
    MAX_SESSIONS in all (then new sign-ins are refused, and nobody is pushed out)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_sessions: int = MAX_SESSIONS,
                 per_client: int = SESSIONS_PER_CLIENT):
        self._clock = clock
        self._max, self._per_client = max_sessions, per_client
        self._lock = threading.Lock()
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def create(self, role: str, client: str, seconds: float | None = None) -> str | None:
        """A new sign-in's token, or None when the server holds as many as it may."""
        now = self._clock()
        with self._lock:
            for key in [k for k, s in self._by_key.items() if s.expires <= now]:
                del self._by_key[key]
            theirs = [k for k, s in self._by_key.items() if s.client == client]
            for key in theirs[:max(0, len(theirs) - self._per_client + 1)]:
                del self._by_key[key]
            if len(self._by_key) >= self._max:
                return None
            token = secrets.token_urlsafe(32)
            self._by_key[self._key(token)] = Session(role, client, now + (seconds or session_seconds()))
            return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        key = self._key(token)
        with self._lock:
            found = self._by_key.get(key)
            if found is not None and found.expires <= self._clock():
                del self._by_key[key]
                return None
            return found

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._by_key.pop(self._key(token), None)


THROTTLE = Throttle()
SESSIONS = Sessions()


# --- who may do what ----------------------------------------------------------------------------

def session_cookie() -> str | None:
    """This browser's sign-in token, from the cookies its websocket opened with."""
    try:
        value = st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # no request context
        return None
    return value if isinstance(value, str) else None


def current_session() -> Session | None:
    return SESSIONS.get(session_cookie())


def role() -> str | None:
    """This browser's role in share mode (None until signed in, and after signing out)."""
    found = current_session()
    return found.role if found else None


def is_admin() -> bool:
    return share_mode() and role() == ADMIN


def session_owner() -> str:
    return str(st.session_state.get("owner", ""))


def may_cancel(run_owner: str, owner: str) -> bool:
    """People cancel their own jobs (as the studio always did); an admin any."""
    return run_owner == owner or is_admin()


def may_change(run_owner: str, owner: str) -> bool:
    """Delete, retitle, retag, favourite: on this computer anyone anything (it is one person's
    gallery); in share mode only the owner or an admin."""
    return not share_mode() or may_cancel(run_owner, owner)


def _check(gallery: Gallery, run_id: int, verb: str, allowed: Callable[[str, str], bool], owner: str | None) -> None:
    run = gallery.get(run_id)
    if not allowed(run.owner, session_owner() if owner is None else owner):
        raise NotAllowed(f"Run #{run.id} belongs to {run.owner or 'someone else'}; only they or an admin can {verb} it.")


def cancel(gallery: Gallery, run_id: int, owner: str | None = None) -> str:
    """Gallery.request_cancel after the owner check (the buttons are only drawn for allowed runs; this
    also stops a hand-made request for someone else's). Raises NotAllowed."""
    _check(gallery, run_id, "cancel", may_cancel, owner)
    return gallery.request_cancel(run_id)


def delete(gallery: Gallery, run_id: int, owner: str | None = None) -> None:
    """Gallery.delete after the owner check. Raises NotAllowed."""
    _check(gallery, run_id, "delete", may_change, owner)
    gallery.delete(run_id)


def set_title_tags(gallery: Gallery, run_id: int, title: str, tags: str, owner: str | None = None) -> None:
    _check(gallery, run_id, "retitle", may_change, owner)
    gallery.set_title_tags(run_id, title, tags)


def set_favorite(gallery: Gallery, run_id: int, favorite: bool, owner: str | None = None) -> None:
    _check(gallery, run_id, "mark", may_change, owner)
    gallery.set_favorite(run_id, favorite)


def may_use_weights(weights: str) -> bool:
    """In a shared studio only the admin names weights other than the built-in ones: a weights
    path names a file on the server, so anyone could probe which files exist there, and the
    engine keeps every weights file it read in memory."""
    from engine.params import BUILTIN_WEIGHTS

    return not share_mode() or is_admin() or weights in BUILTIN_WEIGHTS


# --- the Streamlit glue -------------------------------------------------------------------------

SIGNED_OUT = "You are signed out (or your sign-in has expired). Reload the page to sign in again."


def _sign_out() -> None:
    SESSIONS.end(session_cookie())


def gate() -> None:
    """Call first thing in the app. Outside share mode it returns at once. In share mode it stops
    the script (st.stop) when share mode is misconfigured or this browser is not signed in (the
    gate in front of the server let it in, but it has signed out or expired since)."""
    if not share_mode():
        return
    problem = share_problem()
    if problem:
        st.error(problem, icon=":material/lock:")
        st.stop()
    if current_session() is None:
        st.title("Style transfer studio")
        st.info(SIGNED_OUT, icon=":material/lock:")
        st.stop()
    with st.sidebar:
        st.caption("Shared studio" + (" · signed in as **admin**" if is_admin() else ""))
        st.button("Sign out", key="sign_out", on_click=_sign_out, type="tertiary", icon=":material/logout:",
                  help="Signs this browser out, in every tab.")


def fragment(func: Callable[..., Any] | None = None, *, run_every: float | None = None) -> Any:
    """st.fragment whose every rerun checks the sign-in first. A fragment's rerun does not pass
    through gate(), so one that outlives its sign-in (signed out in another tab, expired) reruns
    the whole page instead, and gate() says why."""
    def wrap(body: Callable[..., Any]) -> Any:
        @functools.wraps(body)  # Streamlit tells fragments apart by module and qualified name
        def checked(*args: Any, **kwargs: Any) -> Any:
            if share_mode() and current_session() is None:
                st.rerun(scope="app")
            return body(*args, **kwargs)
        return st.fragment(checked, run_every=run_every)
    return wrap(func) if func is not None else wrap


def main() -> int:
    """`python -m app_pages.auth`: the check `make share` runs before starting the server."""
    problem = share_problem() if share_mode() else f"{SHARE_ENV}=1 is not set; nothing to check."
    if problem:
        print(f"make share: {problem}", file=sys.stderr)
        return 2
    print("make share: password set; serving on all interfaces (see docs/reliability.md).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
