"""app_pages/gate.py, the door in front of a shared studio's server, called as the server calls
it (ASGI) with a stand-in for Streamlit behind it. The real server, `make share` and a real
browser are tests/test_share_mode.py's."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app_pages import auth, gate

PASSWORD, ADMIN_PASSWORD = "correct horse", "admin battery"


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.SHARE_ENV, "1")
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(auth.ADMIN_ENV, ADMIN_PASSWORD)
    monkeypatch.setenv(auth.FORWARDED_ENV, "")
    monkeypatch.setattr(auth, "_xsrf_on", lambda: True)
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle())
    monkeypatch.setattr(auth, "SESSIONS", auth.Sessions())


class Answer:
    """What the gate sent back, and whether Streamlit (the stand-in) was reached."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reached = False
        self.body_read = 0

    @property
    def status(self) -> int | None:
        start = next((m for m in self.messages if m["type"] == "http.response.start"), None)
        return start["status"] if start else None

    def header(self, name: bytes) -> str | None:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return next((v.decode() for k, v in start["headers"] if k == name), None)

    @property
    def text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body").decode()


def call(path: str, method: str = "GET", kind: str = "http", cookie: str | None = None, body: bytes = b"",
         client: str = "10.0.0.7", query: bytes = b"") -> Answer:
    answer = Answer()

    async def streamlit(scope: Any, receive: Any, send: Any) -> None:
        answer.reached = True

    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive() -> dict[str, Any]:
        if kind == "websocket":
            return {"type": "websocket.connect"}
        chunk = chunks.pop(0) if chunks else b""
        answer.body_read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        answer.messages.append(message)

    headers = [(b"host", b"127.0.0.1:8501")] + ([(b"cookie", cookie.encode())] if cookie else [])
    scope = {"type": kind, "path": path, "method": method, "headers": headers, "client": (client, 5555),
             "scheme": "http", "query_string": query}
    asyncio.run(gate.ShareGate(streamlit)(scope, receive, send))
    return answer


def sign_in(password: str, client: str = "10.0.0.7", next_page: str = "/") -> Answer:
    from urllib.parse import urlencode

    return call(gate.SIGN_IN_PATH, "POST", body=urlencode({"password": password, "next": next_page}).encode(),
                client=client)


def session_cookie(answer: Answer) -> str:
    return answer.header(b"set-cookie").split(";")[0]


def test_outside_share_mode_everything_passes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(auth.SHARE_ENV, raising=False)
    for path in ("/", "/_stcore/metrics", "/_stcore/upload_file/a/b"):
        assert call(path).reached
    assert call("/_stcore/stream", kind="websocket").reached


def test_a_stranger_gets_the_sign_in_page_and_nothing_else(shared):
    """Finding 2. Before: every websocket got a session, signed in or not, uploads were taken
    from any session id, metrics and media answered anyone."""
    page = call("/gallery", query=b"run=3")
    assert page.status == 200 and not page.reached
    assert 'type="password"' in page.text and 'value="/gallery?run=3"' in page.text
    assert page.header(b"content-security-policy") and page.header(b"x-frame-options") == "DENY"
    for path, method in (("/_stcore/upload_file/s/f", "PUT"), ("/_stcore/metrics", "GET"), ("/media/abc.png", "GET"),
                         ("/component/streamlit_drawable_canvas.st_canvas/index.html", "GET"),
                         ("/_stcore/host-config", "GET"), ("/static/js/main.js", "GET")):
        answer = call(path, method, body=b"x" * 20_000_000 if method == "PUT" else b"")
        assert (answer.status, answer.reached) == (403, False), path
        assert answer.body_read == 0  # an upload's bytes are never read, let alone kept
    ws = call("/_stcore/stream", kind="websocket")
    assert not ws.reached and ws.messages[0]["type"] == "websocket.close" and ws.messages[0]["code"] == 1008
    health = call("/_stcore/health")
    assert health.reached  # monitors may ask; it answers "ok" and nothing else


def test_signing_in_sets_an_http_only_cookie_and_lets_the_browser_in(shared):
    answer = sign_in(PASSWORD, next_page="/gallery?run=3")
    assert answer.status == 303 and answer.header(b"location") == "/gallery?run=3"
    cookie = answer.header(b"set-cookie")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=86400" in cookie and "Path=/" in cookie
    assert auth.SESSIONS.get(session_cookie(answer).split("=", 1)[1]).role == auth.USER
    for path in ("/", "/_stcore/upload_file/s/f", "/media/abc.png"):
        assert call(path, cookie=session_cookie(answer)).reached
    assert call("/_stcore/stream", kind="websocket", cookie=session_cookie(answer)).reached
    assert call("/_stcore/metrics", cookie=session_cookie(answer)).status == 403  # the admin's
    admin = sign_in(ADMIN_PASSWORD)
    assert call("/_stcore/metrics", cookie=session_cookie(admin)).reached


def test_wrong_passwords_are_refused_and_slowed(shared):
    for _ in range(auth.FREE_ATTEMPTS):
        wrong = sign_in("guess")
        assert wrong.status == 401 and "Wrong password." in wrong.text and "Wait" not in wrong.text
        assert wrong.header(b"set-cookie") is None
    assert "Wait 1 s before the next try" in sign_in("guess").text
    too_soon = sign_in(PASSWORD)  # right, but before the wait is over: not even looked at
    assert too_soon.status == 429 and "Too many wrong passwords" in too_soon.text
    assert sign_in(PASSWORD, client="10.0.0.8").status == 303  # another machine is not held up


def test_where_to_go_after_signing_in_stays_on_this_server(shared):
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
                    "/-/sign-in", "/a\r\nSet-Cookie: x=1"):
        assert gate.safe_next(hostile) == "/"
    assert gate.safe_next("/gallery?run=3") == "/gallery?run=3"
    assert sign_in(PASSWORD, next_page="//evil.example/").header(b"location") == "/"


def test_a_form_too_long_is_not_read_on(shared):
    answer = call(gate.SIGN_IN_PATH, "POST", body=b"password=" + b"x" * 50_000)
    assert answer.status == 413 and answer.body_read <= gate.MAX_FORM_BYTES + 1000


def test_a_token_the_server_forgot_gets_the_sign_in_page_and_is_cleared(shared):
    answer = sign_in(PASSWORD)
    auth.SESSIONS.end(session_cookie(answer).split("=", 1)[1])
    page = call("/", cookie=session_cookie(answer))
    assert page.status == 200 and not page.reached and "Max-Age=0" in page.header(b"set-cookie")
    assert call("/_stcore/stream", kind="websocket", cookie=session_cookie(answer)).reached is False


def test_a_misconfigured_share_mode_serves_nothing(shared, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(auth.PASSWORD_ENV)
    monkeypatch.setattr(auth, "_secret", lambda name: None)
    answer = call("/")
    assert answer.status == 503 and "needs a password" in answer.text and not answer.reached
