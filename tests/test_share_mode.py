"""Safe by default, shareable on purpose: `make run` listens on 127.0.0.1 only; `make share`
listens on every interface but refuses to start without a password, and then answers nothing
but its sign-in page until a browser has signed in. Here the real server, as `make share` starts
it, is attacked the ways docs/reliability.md ("Security") lists: by a stranger, by a signed-in
colleague sending what no page offered (tests/support/st_client.py speaks the browser's
websocket protocol), through a proxy's headers, and in a real Chromium.

The servers started here listen on 127.0.0.1 only (SHARE_HOST overrides make share's 0.0.0.0)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app_pages import auth
from engine.images import MAX_BYTES
from gallery import Gallery
from harness.paths import CONTENT, ROOT, STYLE
from harness.studio import free_port
from harness.waiting import wait_for
from support.app import small_params
from support.browser import chromium, needs_chromium, studio_process, wait_css, wait_idle
from support.runs import fake_result
from support.st_client import StreamlitClient, http_session, sign_in, trigger

PASSWORD, ADMIN_PASSWORD = "correct horse ünïcode", "admin battery staple"


# --- the make targets -------------------------------------------------------------------------------

def make_dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_make_run_and_the_config_listen_on_localhost_only():
    assert "--server.address 127.0.0.1" in make_dry_run("run")
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True
    # Uploads: Streamlit refuses bigger files before our code sees them; engine.images has the same bound.
    assert server["maxUploadSize"] * 1024 * 1024 == MAX_BYTES


def test_make_share_checks_first_then_listens_everywhere_with_xsrf():
    lines = make_dry_run("share").replace("\\\n", " ").splitlines()
    check = next(i for i, line in enumerate(lines) if "-m app_pages.auth" in line)
    serve = next(i for i, line in enumerate(lines) if "streamlit run" in line)
    assert check < serve
    assert "STUDIO_SHARE=1" in lines[check] and "STUDIO_SHARE=1" in lines[serve]
    assert "--server.address 0.0.0.0" in lines[serve] and "streamlit run server.py" in lines[serve]
    # X-Forwarded-For is believed from nobody (uvicorn's default believes 127.0.0.1: an SSH tunnel)
    assert "FORWARDED_ALLOW_IPS= " in lines[check] and "FORWARDED_ALLOW_IPS= " in lines[serve]
    assert "--server.enableXsrfProtection true" in lines[serve]
    assert "--client.showErrorDetails type" in lines[serve]  # no tracebacks (server paths) to the lab


def _make_share(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if k not in (auth.PASSWORD_ENV, auth.ADMIN_ENV, auth.SHARE_ENV)}
    # HOME elsewhere: no ~/.streamlit/secrets.toml of whoever runs the tests.
    clean.update(HOME=str(tmp_path), STUDIO_DATA=str(tmp_path / "data"), **env)
    return subprocess.Popen(["make", "--no-print-directory", "share", "SHARE_HOST=127.0.0.1", f"PORT={port}"],
                            cwd=ROOT, env=clean, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_share_without_a_password_refuses_before_anything_listens(tmp_path: Path):
    port = free_port()
    proc = _make_share(tmp_path, port)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Share mode needs a password" in out and "STUDIO_PASSWORD" in out and "make run" in out
    assert "streamlit run" not in out  # the server command never ran
    assert not _listening(port)


def test_make_share_with_a_password_serves(tmp_path: Path):
    port = free_port()
    proc = _make_share(tmp_path, port, STUDIO_PASSWORD=PASSWORD)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                return r.status == 200
        wait_for(healthy, 90, "make share to serve", interval=0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


# --- the real server, attacked -------------------------------------------------------------------

@contextlib.contextmanager
def shared_studio(tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """The studio served as `make share` serves it (server.py, X-Forwarded-For believed from
    nobody), on 127.0.0.1, without workers; yields its URL, process and data folder."""
    data = tmp_path / "data"
    settings = {auth.SHARE_ENV: "1", auth.PASSWORD_ENV: PASSWORD, auth.ADMIN_ENV: ADMIN_PASSWORD,
                auth.FORWARDED_ENV: "", "STUDIO_WORKER": "0", "HOME": str(tmp_path), **env}
    with studio_process(data, tmp_path / "server.log", **settings) as (url, proc):
        yield url, proc, data


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _put(url: str, path: str, size: int, headers: dict[str, str]) -> int | str:
    """A PUT of `size` bytes sent as fast as the server takes them: its status, or "reset" when
    the server closed the connection without reading the body."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("PUT", path)
        for name, value in {**headers, "Content-Length": str(size)}.items():
            conn.putheader(name, value)
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(0, size, 1 << 20):
                conn.send(b"\0" * (1 << 20))
        try:
            return conn.getresponse().status
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return "reset"
    finally:
        conn.close()


def _status(opener: urllib.request.OpenerDirector, request: urllib.request.Request | str) -> int:
    try:
        with opener.open(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
def test_a_stranger_reaches_nothing_but_the_sign_in_page(tmp_path: Path):
    """Finding 2. Before: four 20 MB uploads from a client that never signed in raised the
    server's memory by 81 MB, and /_stcore/metrics answered anyone."""
    from websockets.exceptions import InvalidStatus

    with shared_studio(tmp_path) as (url, proc, _):
        stranger, jar = http_session()
        _status(stranger, f"{url}/_stcore/health")  # gives the XSRF cookie, as before
        xsrf = next(c.value for c in jar if c.name == "_streamlit_xsrf")
        before = _rss_mb(proc.pid)
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        for i in range(4):
            answer = _put(url, f"/_stcore/upload_file/session/{i}", 20_000_000, {"X-Xsrftoken": xsrf, "Cookie": cookie})
            assert answer in (403, "reset")  # answered before the body: the client may see its reset first
        assert _rss_mb(proc.pid) - before < 20  # the bodies were never read
        for path in ("/_stcore/metrics", "/_stcore/host-config", "/media/0123.png", "/static/js/index.js"):
            assert _status(stranger, f"{url}{path}") == 403, path
        with stranger.open(f"{url}/gallery?run=1", timeout=30) as page:
            assert 'type="password"' in page.read().decode()  # the sign-in page, not the app
        with pytest.raises(InvalidStatus, match="403"):
            StreamlitClient(url)
        status, _, cookies = sign_in(url, PASSWORD)
        assert status == 200 and auth.SESSION_COOKIE in cookies  # and then the app itself
        assert _status(http_session(cookies)[0], f"{url}/_stcore/metrics") == 403  # the admin's only
        _, _, admin = sign_in(url, ADMIN_PASSWORD)
        assert _status(http_session(admin)[0], f"{url}/_stcore/metrics") == 200


@pytest.mark.slow
def test_a_made_up_forwarded_for_header_gets_no_new_guesses(tmp_path: Path):
    """Finding 3. Before: uvicorn took the client's address from X-Forwarded-For, believed from
    127.0.0.1 (where an SSH tunnel or a proxy connects from); eight guesses with eight made-up
    headers were all checked at once."""
    with shared_studio(tmp_path) as (url, _, _):
        answers = [sign_in(url, f"guess {i}", {"X-Forwarded-For": f"10.1.2.{i}"})[:2] for i in range(8)]
    assert [status for status, _ in answers[:auth.FREE_ATTEMPTS]] == [401] * auth.FREE_ATTEMPTS
    assert "Wait 1 s" in answers[auth.FREE_ATTEMPTS][1]
    assert all(status == 429 and "Too many wrong passwords" in text for status, text in answers[auth.FREE_ATTEMPTS + 1:])


@pytest.mark.slow
def test_behind_a_proxy_its_forwarded_for_tells_people_apart(tmp_path: Path):
    """STUDIO_PROXY=1 (README: the proxy must overwrite X-Forwarded-For): each client is
    counted on its own, as the proxy reports it."""
    with shared_studio(tmp_path, **{auth.PROXY_ENV: "1", auth.FORWARDED_ENV: "127.0.0.1"}) as (url, _, _):
        answers = [sign_in(url, "guess", {"X-Forwarded-For": f"10.1.2.{i}"})[0] for i in range(6)]
        assert answers == [401] * 6
        assert sign_in(url, PASSWORD, {"X-Forwarded-For": "10.1.2.200"})[0] == 200


@pytest.mark.slow
def test_a_colleague_cannot_make_the_server_read_a_file(tmp_path: Path):
    """Finding 1. Before: the pickers' callback took whatever string the browser sent as the
    picker's value; a private image outside the data folder became the content (its thumbnail
    served to anyone), Generate copied it into the gallery for everyone, and a FIFO or
    /dev/zero would have hung or filled the server."""
    secret = tmp_path / "private" / "holiday.jpg"
    secret.parent.mkdir()
    secret.write_bytes(CONTENT.read_bytes())
    fifo = tmp_path / "private" / "pipe"
    os.mkfifo(fifo)
    examples = tmp_path / "examples"
    for kind, image in (("content", CONTENT), ("style", STYLE)):
        (examples / kind).mkdir(parents=True)
        (examples / kind / image.name).write_bytes(image.read_bytes())
    with shared_studio(tmp_path, STUDIO_EXAMPLES=str(examples)) as (url, _, data):
        _, _, cookies = sign_in(url, PASSWORD)
        with StreamlitClient(url, cookies) as client:
            page = client.run()
            content, style = page.widget_id("content_pick"), page.widget_id("style_pick")
            page = client.run(**{content: str(secret)})
            assert not page.exception and "Choose a content image" in page.text
            page = client.run(**{content: str(fifo), style: "/dev/zero"})
            assert not page.exception and "Choose a content image" in page.text
            page = client.run(**{style: str(examples / "style" / STYLE.name)})  # offered: taken
            generate = page.widget("generate")[1]
            assert generate.disabled  # still no content
            client.run(**{generate.id: trigger(generate.id)})
        g = Gallery(data)
        assert g.count_runs() == 0
        assert [i.name for i in g.list_inputs()] == []  # nothing copied in; the example is not stored until used
        assert not any("holiday" in str(p) for p in data.rglob("*"))


@pytest.mark.slow
def test_a_colleague_cannot_edit_someone_elses_run(tmp_path: Path):
    """Finding 4 through the real server. Before: the Favorite toggle and the title form of
    someone else's run worked for anyone. Now they are disabled, a forged change of them
    changes nothing, and the callbacks refuse on their own (tests/test_auth.py)."""
    with shared_studio(tmp_path) as (url, _, data):
        g = Gallery(data)
        theirs = g.submit(small_params(), owner="someone0000000000")
        g.finish(g.claim_next("test").id, fake_result("orange"))
        _, _, cookies = sign_in(url, PASSWORD)
        with StreamlitClient(url, cookies) as client:
            page = client.run(page="gallery", query_string=f"run={theirs}")
            favorite = page.widget(f"favorite-{theirs}")[1]
            assert favorite.disabled
            page = client.run(page="gallery", query_string=f"run={theirs}", **{favorite.id: True})
            assert not page.exception
        assert not g.get(theirs).favorite


# --- a real browser against a real server -------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_browser_signs_in_once_signs_out_everywhere_and_sees_titles_as_text(tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    hostile = "Prize [claim it](http://evil.example/x) ![t](http://evil.example/t.png) www.evil.example"
    with shared_studio(tmp_path) as (url, _, data), chromium(tmp_path / "downloads") as driver:
        g = Gallery(data)
        rid = g.submit(small_params(), owner="someone0000000000", title=hostile)
        g.finish(g.claim_next("test").id, fake_result("orange"))

        def type_password(text: str) -> None:
            field = wait_css(driver, "input[type='password']", timeout=60)
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(text, Keys.ENTER)

        driver.get(f"{url}/gallery?run={rid}")
        type_password("wrong")
        wait_for(lambda: "Wrong password" in driver.find_element(By.TAG_NAME, "body").text, 20, "the refusal")
        assert not driver.find_elements(By.CSS_SELECTOR, ".st-key-back")
        type_password(PASSWORD)
        wait_css(driver, "h3", timeout=60)  # back where it was going: the run's detail
        wait_idle(driver)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "[claim it](http://evil.example/x)" in body.replace("\u2060", "")  # the title, as typed
        links = [a.get_attribute("href") or "" for a in driver.find_elements(By.CSS_SELECTOR, "a")]
        images = [i.get_attribute("src") or "" for i in driver.find_elements(By.CSS_SELECTOR, "img")]
        assert not any("evil" in href for href in links + images)
        assert "studio_session" not in driver.execute_script("return document.cookie")  # HttpOnly

        driver.get(url)  # a reload: not asked again
        wait_css(driver, ".st-key-generate", timeout=60)
        driver.switch_to.new_window("tab")  # a second tab of the same browser
        driver.get(f"{url}/queue")
        wait_css(driver, ".st-key-sign_out button", timeout=60).click()
        wait_for(lambda: auth.SIGNED_OUT in driver.find_element(By.TAG_NAME, "body").text, 30, "signed out")
        driver.switch_to.window(driver.window_handles[0])  # the first tab finds out at its next poll
        wait_for(lambda: auth.SIGNED_OUT in driver.find_element(By.TAG_NAME, "body").text, 30,
                 "the other tab signed out too")
        driver.get(url)
        wait_css(driver, "input[type='password']", timeout=60)


# Each pick list with a value of the type its browser side sends, naming nothing it offered.
CHOICES = {"selectbox": str(CONTENT), "radio": str(CONTENT), "button_group": [str(CONTENT)],
           "slider": [str(CONTENT)]}  # a select_slider's


@pytest.mark.slow
def test_no_choice_takes_a_value_the_page_did_not_offer(tmp_path: Path):
    """Every pick list of Create, Queue, Gallery and a run's detail, sent a value it never
    offered (a server path), by a signed-in colleague: no page breaks, nothing is queued or
    stored. Before: the content and style pickers took the path (finding 1), and the sweep's
    parameter picker raised KeyError."""
    with shared_studio(tmp_path) as (url, _, data):
        g = Gallery(data)
        rid = g.submit(small_params(preview_every=5), owner="someone0000000000")
        g.finish(g.claim_next("test").id, fake_result("orange", previews=2, size=(64, 48), preview_every=5))
        stored = g.list_inputs()  # the run's content and style
        _, _, cookies = sign_in(url, PASSWORD)
        tried = []
        for page, query in (("", ""), ("queue", ""), ("gallery", ""), ("gallery", f"run={rid}")):
            with StreamlitClient(url, cookies) as client:
                widgets = client.run(page=page, query_string=query).widgets
            for wid, (kind, body) in widgets.items():
                if kind not in CHOICES or (kind == "slider" and body.type != body.SELECT_SLIDER):
                    continue
                with StreamlitClient(url, cookies) as client:  # a session of its own each: no state carried over
                    client.run(page=page, query_string=query)
                    drawn = client.run(page=page, query_string=query, **{wid: CHOICES[kind]})
                    assert not drawn.exception, (page, wid, drawn.exception)
                    tried.append(wid.split("-", 2)[-1])
        assert {"content_pick", "style_pick", "sweep_param_1", "p_device", "g_status", "g_sort", f"scrub-{rid}"} <= set(tried)
        assert g.count_runs() == 1 and g.list_inputs() == stored
