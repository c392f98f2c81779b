"""A small Streamlit client that speaks the browser's websocket protocol, for the security tests:
it sends the widget states a hostile client could send (values no page offered, buttons that are
not drawn) and reads back what the server drew.

Only 127.0.0.1. The protocol is Streamlit's own: protobuf BackMsgs in, ForwardMsgs out, the XSRF
token in the websocket's subprotocol list beside the cookie it came from.
"""
from __future__ import annotations

import http.cookiejar
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

XSRF_COOKIE = "_streamlit_xsrf"


def http_session(cookies: dict[str, str] | None = None) -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    """An opener that keeps cookies (a browser's jar, without the browser)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    for name, value in (cookies or {}).items():
        jar.set_cookie(http.cookiejar.Cookie(0, name, value, None, False, "127.0.0.1", False, False, "/", True,
                                             False, None, True, None, None, {}))
    return opener, jar


def cookie(jar: http.cookiejar.CookieJar, name: str) -> str | None:
    return next((c.value for c in jar if c.name == name), None)


def sign_in(url: str, password: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """Posts the share-mode sign-in form as a browser would: (status, page text, cookies set)."""
    import urllib.error
    from urllib.parse import urlencode

    opener, jar = http_session()
    request = urllib.request.Request(f"{url}/-/sign-in", data=urlencode({"password": password, "next": "/"}).encode(),
                                     headers=headers or {}, method="POST")
    try:
        with opener.open(request, timeout=30) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    return status, text, {c.name: c.value for c in jar}


@dataclass
class Page:
    """What one script run drew: widgets by id (their proto), and every text shown."""

    widgets: dict[str, tuple[str, Any]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    exception: str = ""

    def widget(self, key: str) -> tuple[str, Any]:
        """The widget whose user key is `key` (Streamlit ends a keyed widget's id with it)."""
        found = [w for wid, w in self.widgets.items() if wid.endswith("-" + key)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} widgets with key {key!r}; keys: {sorted(self.widgets)}")
        return found[0]

    def widget_id(self, key: str) -> str:
        return self.widget(key)[1].id

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


class StreamlitClient:
    """One websocket session of a page. `cookies`: what a browser would send (a signed-in
    browser's session cookie, say); the XSRF cookie is fetched as the page would fetch it."""

    def __init__(self, url: str, cookies: dict[str, str] | None = None, timeout: float = 60):
        from websockets.sync.client import connect

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.opener, self.jar = http_session(cookies)
        with self.opener.open(f"{self.url}/_stcore/health", timeout=timeout) as response:
            response.read()
        xsrf = cookie(self.jar, XSRF_COOKIE)
        host = urlparse(self.url).netloc
        header = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        self.ws = connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit", xsrf or ""],  # type: ignore[list-item]
                          additional_headers={"Cookie": header, "Origin": self.url},
                          max_size=None, open_timeout=timeout, legacy=True)
        self.widgets: dict[str, WidgetState] = {}  # the state this client reports, as a browser keeps it

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> StreamlitClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(self, page: str = "", query_string: str = "", **widgets: Any) -> Page:
        """Reruns the script with the widget states set so far plus `widgets` (id -> a value, or a
        WidgetState), as a browser does when something changes; returns what that run drew.
        `page`: the page's URL name ("gallery"), as a browser opening /gallery asks for it. A
        trigger (a button) counts for this run only."""
        triggers = []
        for wid, value in widgets.items():
            state = value if isinstance(value, WidgetState) else _state(wid, value)
            if state.HasField("trigger_value"):
                triggers.append(state)
            else:
                self.widgets[wid] = state
        msg = BackMsg()
        msg.rerun_script.query_string = query_string
        msg.rerun_script.page_name = page
        msg.rerun_script.widget_states.widgets.extend([*self.widgets.values(), *triggers])
        self.ws.send(msg.SerializeToString())
        return self._read_run()

    def _read_run(self) -> Page:
        page = Page()
        deadline = time.monotonic() + self.timeout
        for msg in self._messages(deadline):
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                _collect(msg.delta.new_element, page)
            elif kind == "script_finished":
                return page
        raise TimeoutError(f"the script did not finish within {self.timeout:.0f} s")

    def _messages(self, deadline: float) -> Iterator[ForwardMsg]:
        while True:
            data = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            msg = ForwardMsg()
            msg.ParseFromString(data if isinstance(data, bytes) else data.encode())
            yield msg


def _state(wid: str, value: Any) -> WidgetState:
    state = WidgetState(id=wid)
    if isinstance(value, bool):
        state.bool_value = value
    elif isinstance(value, int):
        state.int_value = value
    elif isinstance(value, float):
        state.double_value = value
    elif isinstance(value, str):
        state.string_value = value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        state.string_array_value.data.extend(value)
    else:
        raise TypeError(f"no widget state for {value!r}")
    return state


def trigger(wid: str) -> WidgetState:
    """A button press."""
    return WidgetState(id=wid, trigger_value=True)


def _collect(element: Any, page: Page) -> None:
    kind = element.WhichOneof("type")
    if kind is None:
        return
    body = getattr(element, kind)
    if kind == "exception":
        page.exception = f"{body.type}: {body.message}"
    for name in ("body", "label", "message"):  # markdown, captions, alerts, widget labels
        value = getattr(body, name, None)
        if isinstance(value, str) and value:
            page.texts.append(value)
    wid = getattr(body, "id", "")
    if isinstance(wid, str) and wid:
        page.widgets[wid] = (kind, body)
