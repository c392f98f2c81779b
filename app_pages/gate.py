"""The door of a shared studio: an ASGI layer in front of Streamlit's server (server.py puts it
there) that, in share mode, answers a browser that has not signed in with the sign-in page and
nothing else.

Streamlit serves much more than the page: the websocket that runs the script, file uploads
(held in memory), the media files the page shows, custom components, metrics. Each would answer
anyone who can reach the port, so the check cannot live in the script: here every request and
websocket needs a live sign-in (auth.SESSIONS) before it reaches Streamlit. Only the health check
answers everyone ("ok"), for monitors.

Signing in is a plain HTML form posted here: the password is checked against the throttle
first (per client address, and for all clients together), then a random token goes back in an
HttpOnly, SameSite=Lax cookie, so the page's scripts never see it. Outside share mode requests
pass straight through.
"""
from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from app_pages import auth

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SIGN_IN_PATH = "/-/sign-in"
PUBLIC_PATHS = frozenset({"/_stcore/health"})
ADMIN_PATHS = ("/_stcore/metrics",)
MAX_FORM_BYTES = 4096  # a password and where to go next; anything longer is not a sign-in


class ShareGate:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not auth.share_mode():
            return await self.app(scope, receive, send)
        path = scope.get("path") or "/"
        if path in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        problem = auth.share_problem()
        if problem:
            return await _refuse(scope, receive, send, 503, problem)
        if path == SIGN_IN_PATH and scope["type"] == "http" and scope.get("method") == "POST":
            return await _sign_in(scope, receive, send)
        token = _cookies(scope).get(auth.SESSION_COOKIE)
        session = auth.SESSIONS.get(token)
        if session is None:
            if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and _is_page(path):
                query = (scope.get("query_string") or b"").decode("latin-1")
                return await _page(send, 200, sign_in_html(safe_next(path + (f"?{query}" if query else ""))),
                                   forget=bool(token))
            return await _refuse(scope, receive, send, 403, "Sign in first.")
        if path.startswith(ADMIN_PATHS) and session.role != auth.ADMIN:
            return await _refuse(scope, receive, send, 403, "For the admin only.")
        await self.app(scope, receive, send)


def _is_page(path: str) -> bool:
    """A page a person opens (/, /gallery, …), not one of the resources the page loads."""
    return not path.startswith(("/_stcore/", "/static/", "/media/", "/component/", "/-/"))


def client_address(scope: Scope) -> str:
    """Who is guessing: the connection's address (X-Forwarded-For only behind STUDIO_PROXY,
    which uvicorn applied already; auth.share_problem makes sure it believes nothing else)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _cookies(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                found.setdefault(key, val)
    return found


async def _read_form(receive: Receive) -> dict[str, str] | None:
    """The posted form's fields, or None when the body is over MAX_FORM_BYTES (not read further)."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 for c in value) or value.startswith(SIGN_IN_PATH):
        return "/"
    return value


async def _sign_in(scope: Scope, receive: Receive, send: Send) -> None:
    client = client_address(scope)
    form = await _read_form(receive)
    if form is None:
        return await _page(send, 413, sign_in_html("/", "That is not a sign-in."))
    target = safe_next(form.get("next"))
    wait = auth.THROTTLE.wait_seconds(client)
    if wait > 0:  # before the password is looked at: a right one counts no more than a wrong one
        return await _page(send, 429, sign_in_html(target, f"Too many wrong passwords; try again in {wait:.0f} s."))
    found = auth.role_for(form.get("password", ""))
    if found is None:
        wait = auth.THROTTLE.failed(client)
        return await _page(send, 401, sign_in_html(
            target, "Wrong password." + (f" Wait {wait:.0f} s before the next try." if wait else "")))
    auth.THROTTLE.succeeded(client)
    token = auth.SESSIONS.create(found, client)
    if token is None:
        return await _page(send, 503, sign_in_html(
            target, "Too many browsers are signed in to this studio; ask its admin, or try again tomorrow."))
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    cookie = (f"{auth.SESSION_COOKIE}={token}; Path=/; Max-Age={int(auth.session_seconds())}; HttpOnly; "
              f"SameSite=Lax{secure}")
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", target.encode("utf-8")), (b"set-cookie", cookie.encode("latin-1")),
                            (b"cache-control", b"no-store"), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _page(send: Send, status: int, body: str, forget: bool = False) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
               (b"x-frame-options", b"DENY"), (b"content-security-policy",
                                                 b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")]
    if forget:  # a token the server no longer knows (signed out, expired, restarted): drop it
        headers.append((b"set-cookie", f"{auth.SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax".encode()))
    data = body.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    """No for a request or a websocket, before Streamlit sees it (a websocket is closed
    before it is accepted: the browser gets HTTP 403)."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": text[:120]})
        return
    data = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def sign_in_html(target: str, message: str = "") -> str:
    """The sign-in page: one password field, posted to SIGN_IN_PATH, then on to `target`."""
    note = f'<p class="note" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Style transfer studio · sign in</title>
<style>
body {{ font-family: "Source Sans Pro", system-ui, sans-serif; background: #fff; color: #31333f; margin: 0; }}
main {{ max-width: 26rem; margin: 12vh auto 0; padding: 0 1.5rem; }}
h1 {{ font-size: 2rem; font-weight: 700; margin: 0 0 .4rem; }}
p {{ color: #6b6f7b; margin: 0 0 1.4rem; }}
.note {{ color: #7d353b; background: #ffecec; border-radius: .5rem; padding: .7rem 1rem; }}
label {{ display: block; font-size: .9rem; margin-bottom: .3rem; }}
input[type=password] {{ box-sizing: border-box; width: 100%; font-size: 1rem; padding: .55rem .7rem;
  border: 1px solid #d5d7de; border-radius: .5rem; background: #f0f2f6; }}
button {{ margin-top: 1rem; font-size: 1rem; padding: .5rem 1.2rem; border: 0; border-radius: .5rem;
  background: #ff4b4b; color: #fff; cursor: pointer; }}
</style></head>
<body><main>
<h1>Style transfer studio</h1>
<p>This studio is shared on the lab network. Sign in with the password you were given.</p>
{note}
<form method="post" action="{SIGN_IN_PATH}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{html.escape(target, quote=True)}">
<button type="submit">Sign in</button>
</form>
</main></body></html>
"""
