"""Share mode (`make share`): the studio on the lab network, behind a password.

Local use (`make run`, 127.0.0.1 only) needs none of this, and nothing here changes it: every
check below passes unless STUDIO_SHARE=1. In share mode

- the password comes from $STUDIO_PASSWORD or st.secrets["password"]; without one the studio
  refuses to start, both before the server starts (`python -m app_pages.auth`, run by
  `make share`) and inside the app (gate(), should someone start it by hand);
- each browser is asked once: the answer is remembered for the browser's XSRF cookie, so new
  tabs and reloads of a signed-in browser go straight in; wrong answers are slowed down per
  client address;
- a person cancels and deletes only their own runs, unless they signed in with
  $STUDIO_ADMIN_PASSWORD (or st.secrets["admin_password"]).
"""
from __future__ import annotations

import hmac
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st

from app_pages import owner

SHARE_ENV = "STUDIO_SHARE"
PASSWORD_ENV = "STUDIO_PASSWORD"
ADMIN_ENV = "STUDIO_ADMIN_PASSWORD"
ROLE_KEY = "auth_role"  # session state; no widget has this key, so no client can set it
USER, ADMIN = "user", "admin"

# Wrong passwords: the first few are free (typos), then each waits twice as long, up to a minute.
FREE_ATTEMPTS = 3
MAX_WAIT_S = 60.0
# Signed-in browsers remembered (by a hash of their XSRF token); the oldest are forgotten first.
MAX_REMEMBERED = 10_000


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
    return None


def role_for(given: str) -> str | None:
    """ADMIN, USER or None for a typed password. Both comparisons always run, in constant time."""
    user, admin = passwords()
    typed = given.encode()
    is_user = hmac.compare_digest(typed, user.encode()) if user else False
    is_admin = hmac.compare_digest(typed, admin.encode()) if admin else False
    return ADMIN if is_admin else USER if is_user else None


# --- slowing down guesses -----------------------------------------------------------------------

class Throttle:
    """Wrong attempts per client: FREE_ATTEMPTS free, then a wait doubling from 1 s to MAX_WAIT_S.
    Shared by every session of the process, so a new tab does not reset it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_REMEMBERED):
        self._clock = clock
        self._max = max_clients
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # client -> (count, next try)

    def wait_seconds(self, client: str) -> float:
        with self._lock:
            _, next_try = self._failures.get(client, (0, 0.0))
            return max(0.0, next_try - self._clock())

    def failed(self, client: str) -> float:
        """Records a wrong attempt; returns how long this client must now wait."""
        with self._lock:
            count = self._failures.pop(client, (0, 0.0))[0] + 1
            wait = 0.0 if count <= FREE_ATTEMPTS else min(MAX_WAIT_S, 2.0 ** (count - FREE_ATTEMPTS - 1))
            self._failures[client] = (count, self._clock() + wait)
            while len(self._failures) > self._max:
                self._failures.popitem(last=False)
            return wait

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


class Remembered:
    """Roles of signed-in browsers by browser key, bounded (oldest forgotten first)."""

    def __init__(self, max_items: int = MAX_REMEMBERED):
        self._max = max_items
        self._lock = threading.Lock()
        self._roles: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str | None) -> str | None:
        with self._lock:
            return self._roles.get(key) if key else None

    def put(self, key: str | None, role: str) -> None:
        if not key:
            return
        with self._lock:
            self._roles.pop(key, None)
            self._roles[key] = role
            while len(self._roles) > self._max:
                self._roles.popitem(last=False)

    def forget(self, key: str | None) -> None:
        with self._lock:
            self._roles.pop(key or "", None)


THROTTLE = Throttle()
REMEMBERED = Remembered()


# --- who may do what ----------------------------------------------------------------------------

def role() -> str | None:
    """This session's role in share mode (None until signed in)."""
    return st.session_state.get(ROLE_KEY)


def is_admin() -> bool:
    return share_mode() and role() == ADMIN


def session_owner() -> str:
    return str(st.session_state.get("owner", ""))


def may_cancel(run_owner: str, owner: str) -> bool:
    """People cancel their own jobs (as the studio always did); an admin any."""
    return run_owner == owner or is_admin()


def may_delete(run_owner: str, owner: str) -> bool:
    """On this computer anyone deletes anything (it is one person's gallery); in share mode only
    the owner or an admin."""
    return not share_mode() or may_cancel(run_owner, owner)


def _check(g: Any, run_id: int, verb: str, allowed: Callable[[str, str], bool], owner: str | None) -> None:
    run = g.get(run_id)
    if not allowed(run.owner, session_owner() if owner is None else owner):
        raise NotAllowed(f"Run #{run.id} belongs to {run.owner or 'someone else'}; only they or an admin can {verb} it.")


def cancel(g: Any, run_id: int, owner: str | None = None) -> str:
    """g.request_cancel after the owner check (the buttons are only drawn for allowed runs; this
    also stops a hand-made request for someone else's). Raises NotAllowed."""
    _check(g, run_id, "cancel", may_cancel, owner)
    return g.request_cancel(run_id)


def delete(g: Any, run_id: int, owner: str | None = None) -> None:
    """g.delete after the owner check. Raises NotAllowed."""
    _check(g, run_id, "delete", may_delete, owner)
    g.delete(run_id)


def validation_errors(p: Any, need_images: bool = True) -> dict[str, str]:
    """engine.params.validation_errors, plus share mode's rule: weights are the built-in ones
    unless you are the admin. A weights path names a file on the server: anyone could probe
    which files exist there, and the engine keeps every weights file it read in memory."""
    from engine.params import BUILTIN_WEIGHTS, validation_errors as engine_errors

    errors = engine_errors(p, need_images)
    if share_mode() and not is_admin() and "weights" not in errors and p.weights not in BUILTIN_WEIGHTS:
        errors["weights"] = f"in a shared studio, one of {', '.join(BUILTIN_WEIGHTS)} (other weights: ask the admin)"
    return errors


# --- the Streamlit glue -------------------------------------------------------------------------

def _browser_key() -> str | None:
    """A hash of this browser's XSRF token (secret to the browser, the same in all its tabs)."""
    return owner.owner_from_xsrf_cookie(owner.xsrf_cookie(), digits=64)


def _client() -> str:
    try:
        address = st.context.ip_address
    except Exception:  # no request context
        return "unknown"
    return address if isinstance(address, str) and address else "unknown"  # AppTest gives a mock


def _sign_out() -> None:
    REMEMBERED.forget(_browser_key())
    st.session_state.pop(ROLE_KEY, None)


def _sign_in_form() -> None:
    st.title("Style transfer studio")
    with st.form("sign_in"):
        st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    client = _client()
    wait = THROTTLE.wait_seconds(client)
    if wait > 0:
        st.error(f"Too many wrong passwords; try again in {wait:.0f} s.")
        return
    found = role_for(str(st.session_state.get("auth_password") or ""))
    if found is None:
        wait = THROTTLE.failed(client)
        st.error("Wrong password." + (f" Wait {wait:.0f} s before the next try." if wait else ""))
        return
    THROTTLE.succeeded(client)
    st.session_state[ROLE_KEY] = found
    REMEMBERED.put(_browser_key(), found)
    st.session_state.pop("auth_password", None)
    st.rerun()


def gate() -> None:
    """Call first thing in the app. Outside share mode it returns at once. In share mode it stops
    the script (st.stop) with an error when share mode is misconfigured, or with the sign-in form
    until this browser has given the password."""
    if not share_mode():
        return
    problem = share_problem()
    if problem:
        st.error(problem, icon=":material/lock:")
        st.stop()
    if role() is None:
        remembered = REMEMBERED.get(_browser_key())
        if remembered:
            st.session_state[ROLE_KEY] = remembered
    if role() is None:
        _sign_in_form()
        st.stop()
    with st.sidebar:
        st.caption("Shared studio" + (" · signed in as **admin**" if is_admin() else ""))
        st.button("Sign out", key="sign_out", on_click=_sign_out, type="tertiary", icon=":material/logout:")


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
