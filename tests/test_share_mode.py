"""Safe by default, shareable on purpose: `make run` listens on 127.0.0.1 only; `make share`
listens on every interface but refuses to start without a password, asks each browser for it
once, slows down guesses, and lets people cancel and delete only their own runs (an admin any).

The servers started here listen on 127.0.0.1 only (SHARE_HOST overrides make share's 0.0.0.0)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import tomllib
import urllib.request
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from app_pages import auth
from app_pages.results import PENDING_DELETE
from bench.studio import free_port
from engine.images import MAX_BYTES
from support.app import APP, assert_ok, play_worker, small_params
from support.browser import chromium, needs_chromium, studio_server, wait_css, wait_idle
from support.paths import ROOT
from support.waiting import wait_for

PASSWORD, ADMIN_PASSWORD = "correct horse ünïcode", "admin battery staple"
QUEUE, GALLERY = "app_pages/queue.py", "app_pages/gallery.py"


@pytest.fixture
def share(studio, monkeypatch: pytest.MonkeyPatch):
    """Share mode with both passwords set, and fresh throttling and sign-in memory."""
    monkeypatch.setenv(auth.SHARE_ENV, "1")
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(auth.ADMIN_ENV, ADMIN_PASSWORD)
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle())
    monkeypatch.setattr(auth, "REMEMBERED", auth.Remembered())
    return studio


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in ("error", "markdown", "caption", "title") for e in at.get(kind))


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="auth_password").input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run()


def shared_app(password: str | None = PASSWORD, owner: str | None = None, page: str | None = None,
               query: dict[str, str] | None = None) -> AppTest:
    """The app in share mode after signing in with `password` (None: not signed in)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query or {})
    if owner:
        at.session_state["owner"] = owner
    at.run()
    if password is not None:
        sign_in(at, password)
    if page:
        at.switch_page(page).run()
    return at


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
    assert "--server.address 0.0.0.0" in lines[serve]
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


def test_check_module_says_why(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.delenv(auth.PASSWORD_ENV, raising=False)
    monkeypatch.setenv(auth.SHARE_ENV, "1")
    monkeypatch.setattr(auth, "_secret", lambda name: None)
    assert auth.main() == 2 and "needs a password" in capsys.readouterr().err
    monkeypatch.setenv(auth.PASSWORD_ENV, "same")
    monkeypatch.setenv(auth.ADMIN_ENV, "same")
    assert auth.main() == 2 and "must differ" in capsys.readouterr().err
    monkeypatch.setenv(auth.ADMIN_ENV, "other")
    assert auth.main() == 0


# --- passwords and guessing ---------------------------------------------------------------------

def test_roles_compare_in_constant_time_and_accept_any_characters(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(auth.ADMIN_ENV, ADMIN_PASSWORD)
    assert auth.role_for(PASSWORD) == auth.USER
    assert auth.role_for(ADMIN_PASSWORD) == auth.ADMIN
    for wrong in ("", PASSWORD[:-1], PASSWORD + " ", PASSWORD.upper(), "ü" * 1000):
        assert auth.role_for(wrong) is None
    monkeypatch.delenv(auth.ADMIN_ENV)
    monkeypatch.setattr(auth, "_secret", lambda name: None)
    assert auth.role_for(ADMIN_PASSWORD) is None and auth.role_for("") is None


def test_throttle_lets_a_few_typos_through_then_doubles_the_wait():
    now = [1000.0]
    t = auth.Throttle(clock=lambda: now[0], max_clients=2)
    waits = [t.failed("10.0.0.9") for _ in range(auth.FREE_ATTEMPTS + 8)]
    assert waits == [0.0] * auth.FREE_ATTEMPTS + [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert t.wait_seconds("10.0.0.9") == 60.0 and t.wait_seconds("10.0.0.10") == 0.0
    now[0] += 61
    assert t.wait_seconds("10.0.0.9") == 0.0
    t.succeeded("10.0.0.9")
    assert t.failed("10.0.0.9") == 0.0  # forgiven after a success
    t.failed("a"), t.failed("b")
    assert len(t._failures) == 2  # bounded: the oldest client is forgotten


def test_remembered_browsers_are_bounded():
    r = auth.Remembered(max_items=2)
    r.put("a", auth.USER), r.put("b", auth.ADMIN), r.put("c", auth.USER)
    assert (r.get("a"), r.get("b"), r.get("c"), r.get(None)) == (None, auth.ADMIN, auth.USER, None)
    r.forget("b")
    assert r.get("b") is None


# --- the app in share mode (AppTest) ------------------------------------------------------------------

def test_without_a_password_the_app_stops_before_opening_anything(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STUDIO_DATA", str(data_dir))
    monkeypatch.setenv(auth.SHARE_ENV, "1")
    monkeypatch.delenv(auth.PASSWORD_ENV, raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert_ok(at)
    assert "Share mode needs a password" in texts(at)
    assert not at.text_input and not at.title  # no form, no page
    assert not (data_dir / "gallery.db").exists()  # stopped before the gallery was opened


def test_xsrf_protection_must_stay_on(share, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(auth, "_xsrf_on", lambda: False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "needs XSRF protection" in texts(at) and not at.text_input
    # and the real option is on, as the config and make share set it
    assert st_config.get_option("server.enableXsrfProtection") is True


def test_the_form_asks_once_refuses_wrong_passwords_and_slows_guessing(share):
    at = shared_app(password=None)
    assert_ok(at)
    assert [t.value for t in at.title] == ["Style transfer studio"]  # the form, not a page
    assert "generate" not in {b.key for b in at.button}
    for _ in range(auth.FREE_ATTEMPTS):
        sign_in(at, "guess")
        assert "Wrong password." in texts(at) and "Wait" not in texts(at)
    sign_in(at, "guess")
    assert "Wait 1 s before the next try" in texts(at)
    sign_in(at, PASSWORD)  # right, but too soon
    assert "Too many wrong passwords" in texts(at)
    assert auth.ROLE_KEY not in at.session_state
    auth.THROTTLE.succeeded("unknown")  # time passes
    sign_in(at, PASSWORD)
    assert_ok(at)
    assert [t.value for t in at.title] == ["Create"] and at.session_state[auth.ROLE_KEY] == auth.USER
    assert "auth_password" not in at.session_state  # the typed password is not kept
    at.run()  # asked once: later runs of the session go straight in
    assert [t.value for t in at.title] == ["Create"]


def test_password_from_streamlit_secrets(share, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(auth.PASSWORD_ENV)
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["password"] = "from secrets"
    at.run()
    assert [t.value for t in at.title] == ["Style transfer studio"]
    sign_in(at, "from secrets")
    assert [t.value for t in at.title] == ["Create"]


def test_the_url_owner_is_ignored_in_share_mode(share):
    at = shared_app(query={"owner": "victim01"})
    assert_ok(at)
    assert at.session_state["owner"] != "victim01"


def test_people_cancel_and_delete_only_their_own(share):
    mine_done = share.submit(small_params(seed=1), owner="me000001")
    play_worker(share, until="done")
    theirs_done = share.submit(small_params(seed=2), owner="them0001")
    play_worker(share, until="done")
    mine = share.submit(small_params(seed=3), owner="me000001")
    theirs = share.submit(small_params(seed=4), owner="them0001")

    at = shared_app(owner="me000001", page=QUEUE)
    assert_ok(at)
    keys = {b.key for b in at.button}
    assert f"qcancel-{mine}" in keys and f"qcancel-{theirs}" not in keys
    with pytest.raises(auth.NotAllowed, match="only they or an admin"):
        auth.cancel(share, theirs, owner="me000001")
    assert share.get(theirs).status == "queued"

    at = shared_app(owner="me000001", page=GALLERY)
    at.query_params["run"] = str(theirs_done)
    at.run()
    assert at.button(key="delete").disabled
    # Should a hand-made request get the dialog open anyway, its action still refuses.
    at.session_state[PENDING_DELETE] = theirs_done
    at.run()
    at.button(key="confirm_delete").click().run()
    assert "only they or an admin can delete it" in texts(at)
    assert share.get(theirs_done).status == "done"

    at.query_params["run"] = str(mine_done)
    at.run()
    assert not at.button(key="delete").disabled
    at.button(key="delete").click().run()
    at.button(key="confirm_delete").click().run()
    assert_ok(at)
    assert share.count_runs() == 3


def test_an_admin_cancels_and_deletes_anything(share):
    theirs = share.submit(small_params(seed=1), owner="them0001")
    at = shared_app(password=ADMIN_PASSWORD, owner="boss0001", page=QUEUE)
    assert at.session_state[auth.ROLE_KEY] == auth.ADMIN
    at.button(key=f"qcancel-{theirs}").click().run()
    assert_ok(at)
    assert share.get(theirs).status == "cancelled"
    at.query_params["run"] = str(theirs)
    at.switch_page(GALLERY).run()
    at.button(key="delete").click().run()
    at.button(key="confirm_delete").click().run()
    assert share.count_runs() == 0


def test_outside_share_mode_nothing_is_asked(studio, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(auth.SHARE_ENV, raising=False)
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)  # set, but not sharing: not asked
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert [t.value for t in at.title] == ["Create"]


# --- a real browser against a real server -------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_browser_signs_in_once_per_browser(tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    env = {auth.SHARE_ENV: "1", auth.PASSWORD_ENV: PASSWORD, "HOME": str(tmp_path)}
    with studio_server(tmp_path / "data", tmp_path / "server.log", **env) as url, \
            chromium(tmp_path / "downloads") as driver:
        def type_password(text: str) -> None:
            field = wait_css(driver, "input[type='password']", timeout=60)
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(text, Keys.ENTER)
            wait_idle(driver)

        driver.get(url)
        type_password("wrong")
        wait_for(lambda: "Wrong password" in driver.find_element(By.TAG_NAME, "body").text, 20, "the refusal")
        assert not driver.find_elements(By.CSS_SELECTOR, ".st-key-generate")
        assert driver.get_cookie("_streamlit_xsrf"), "XSRF protection is on"
        type_password(PASSWORD)
        wait_css(driver, ".st-key-generate", timeout=60)

        driver.get(url)  # a reload is a new Streamlit session of the same browser: not asked again
        wait_css(driver, ".st-key-generate", timeout=60)
        assert not driver.find_elements(By.CSS_SELECTOR, "input[type='password']")

        driver.delete_all_cookies()  # a different browser, as far as the server can tell
        driver.get(url)
        wait_css(driver, "input[type='password']", timeout=60)


def test_weights_files_on_the_server_are_for_the_admin(share, monkeypatch: pytest.MonkeyPatch):
    """The weights box takes typed paths; the Create page validates with auth.validation_errors.
    (AppTest cannot type a new option into a selectbox, so this checks the rule directly.)"""
    p = small_params(weights="/etc/passwd")
    monkeypatch.setattr(auth, "role", lambda: auth.USER)
    assert "in a shared studio, one of caffe, torchvision" in auth.validation_errors(p)["weights"]
    assert "weights" not in auth.validation_errors(small_params(weights="torchvision"))
    monkeypatch.setattr(auth, "role", lambda: auth.ADMIN)
    assert "weights" not in auth.validation_errors(p)
    monkeypatch.delenv(auth.SHARE_ENV)
    monkeypatch.setattr(auth, "role", lambda: None)
    assert "weights" not in auth.validation_errors(p)
