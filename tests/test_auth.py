"""app_pages/auth.py: share mode's configuration, passwords, the throttle, sign-ins, and who may
do what (the pages in share mode, through AppTest). The door in front of the server is
tests/test_gate.py's; `make share` itself and attacks on a real server are in
tests/test_share_mode.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from app_pages import auth, params_form
from app_pages.results import PENDING_DELETE
from support.app import APP, app, assert_ok, play_worker, shown, small_params

PASSWORD, ADMIN_PASSWORD = "correct horse ünïcode", "admin battery staple"
QUEUE, GALLERY = "app_pages/queue.py", "app_pages/gallery.py"


@pytest.fixture
def share(studio, monkeypatch: pytest.MonkeyPatch):
    """Share mode as `make share` sets it up, both passwords set, and fresh throttling and
    sign-ins."""
    monkeypatch.setenv(auth.SHARE_ENV, "1")
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(auth.ADMIN_ENV, ADMIN_PASSWORD)
    monkeypatch.setenv(auth.FORWARDED_ENV, "")
    monkeypatch.delenv(auth.PROXY_ENV, raising=False)
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle())
    monkeypatch.setattr(auth, "SESSIONS", auth.Sessions())
    return studio


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in ("error", "info", "markdown", "caption", "title") for e in at.get(kind))


def signed_in_as(monkeypatch: pytest.MonkeyPatch, role: str | None) -> str | None:
    """This test's browser signed in with `role` (None: not signed in): the token the gate would
    have set in its cookie, which AppTest cannot send."""
    token = auth.SESSIONS.create(role, "127.0.0.1") if role else None
    monkeypatch.setattr(auth, "session_cookie", lambda: token)
    return token


def shared_app(monkeypatch: pytest.MonkeyPatch, role: str | None = auth.USER, owner: str | None = None,
               page: str | None = None, query: dict[str, str] | None = None) -> AppTest:
    """The app in share mode, signed in with `role`."""
    signed_in_as(monkeypatch, role)
    return app(page, owner, query)


# --- configuration ------------------------------------------------------------------------------

def test_check_module_says_why(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.delenv(auth.PASSWORD_ENV, raising=False)
    monkeypatch.delenv(auth.PROXY_ENV, raising=False)
    monkeypatch.setenv(auth.SHARE_ENV, "1")
    monkeypatch.setattr(auth, "_secret", lambda name: None)
    assert auth.main() == 2 and "needs a password" in capsys.readouterr().err
    monkeypatch.setenv(auth.PASSWORD_ENV, "same")
    monkeypatch.setenv(auth.ADMIN_ENV, "same")
    assert auth.main() == 2 and "must differ" in capsys.readouterr().err
    monkeypatch.setenv(auth.ADMIN_ENV, "other")
    monkeypatch.delenv(auth.FORWARDED_ENV, raising=False)  # uvicorn would believe X-Forwarded-For from 127.0.0.1
    assert auth.main() == 2 and "FORWARDED_ALLOW_IPS set and empty" in capsys.readouterr().err
    monkeypatch.setenv(auth.FORWARDED_ENV, "")
    assert auth.main() == 0
    monkeypatch.delenv(auth.FORWARDED_ENV)
    monkeypatch.setenv(auth.PROXY_ENV, "1")  # a proxy in front: believed, as README says
    assert auth.main() == 0


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


# --- the throttle ---------------------------------------------------------------------------------

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


def test_throttle_limits_all_clients_together():
    """Many addresses (a botnet, or made-up ones through a proxy that believes them) guess no
    faster than GLOBAL_GUESSES a minute in all."""
    now = [1000.0]
    t = auth.Throttle(clock=lambda: now[0], global_guesses=5, window=60.0)
    for i in range(4):
        assert t.failed(f"10.0.0.{i}") == 0.0
        now[0] += 1
    assert t.wait_seconds("10.9.9.9") == 0.0  # a fifth client may still try
    assert t.failed("10.0.0.5") == pytest.approx(56.0)  # the fifth guess in 4 s fills the minute's share
    assert t.wait_seconds("10.9.9.9") == pytest.approx(56.0)  # and everyone waits for the oldest to age out
    now[0] += 56
    assert t.wait_seconds("10.9.9.9") == 0.0


# --- sign-ins -------------------------------------------------------------------------------------

def test_sessions_expire_end_and_are_kept_as_hashes_only():
    now = [1000.0]
    s = auth.Sessions(clock=lambda: now[0])
    token = s.create(auth.USER, "10.0.0.1", seconds=3600)
    assert token and len(token) >= 40 and s.get(token).role == auth.USER
    assert token not in repr(s._by_key)  # a memory dump shows no usable token
    assert s.get(token + "x") is None and s.get(None) is None and s.get("") is None
    now[0] += 3601
    assert s.get(token) is None  # expired
    again = s.create(auth.ADMIN, "10.0.0.1", seconds=3600)
    s.end(again)
    assert s.get(again) is None  # signed out


def test_one_client_cannot_push_others_out():
    """Before: a signed-in colleague could sign in 10,000 times and push every other browser
    out of the remembered list. Now each address keeps SESSIONS_PER_CLIENT, its own oldest going
    first, and a full server refuses new sign-ins rather than forget anyone."""
    s = auth.Sessions(max_sessions=10, per_client=3)
    others = [s.create(auth.USER, f"10.0.0.{i}") for i in range(5)]
    mine = [s.create(auth.USER, "10.6.6.6") for _ in range(50)]
    assert all(s.get(t) for t in others)
    assert [bool(s.get(t)) for t in mine[-4:]] == [False, True, True, True]
    assert s.create(auth.USER, "10.0.0.99") and s.create(auth.USER, "10.0.0.98")  # 10 now
    assert s.create(auth.USER, "10.0.0.97") is None  # full: refused, nobody forgotten
    assert all(s.get(t) for t in others)


def test_session_length_is_configurable(monkeypatch: pytest.MonkeyPatch):
    assert auth.session_seconds() == 24 * 3600
    monkeypatch.setenv(auth.SESSION_HOURS_ENV, "2")
    assert auth.session_seconds() == 2 * 3600
    for bad in ("soon", "nan", "-5"):
        monkeypatch.setenv(auth.SESSION_HOURS_ENV, bad)
        assert auth.session_seconds() in (24 * 3600, 60.0)


# --- the app in share mode (AppTest) ---------------------------------------------------------------

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
    at = shared_app(monkeypatch)
    assert "needs XSRF protection" in texts(at) and not at.button
    # and the real option is on, as the config and make share set it
    assert st_config.get_option("server.enableXsrfProtection") is True


def test_a_page_without_a_sign_in_shows_nothing_of_the_studio(share, monkeypatch: pytest.MonkeyPatch):
    at = shared_app(monkeypatch, role=None)
    assert_ok(at)
    assert auth.SIGNED_OUT in texts(at)
    assert [t.value for t in at.title] == ["Style transfer studio"]
    assert "generate" not in {b.key for b in at.button}


def test_signing_out_ends_it_in_every_tab(share, monkeypatch: pytest.MonkeyPatch):
    """Before: Sign out forgot this tab's role only; other tabs of the browser stayed signed in.
    Now the sign-in itself ends, and every tab (even one only polling a fragment) finds out."""
    one = shared_app(monkeypatch, page=QUEUE)
    two = AppTest.from_file(APP, default_timeout=60)  # a second tab: same browser, same cookie
    two.run()
    assert [t.value for t in two.title] == ["Create"]
    one.button(key="sign_out").click().run()
    assert auth.SIGNED_OUT in texts(one)
    two.run()
    assert auth.SIGNED_OUT in texts(two) and "generate" not in {b.key for b in two.button}


def test_the_url_owner_is_ignored_in_share_mode(share, monkeypatch: pytest.MonkeyPatch):
    at = shared_app(monkeypatch, query={"owner": "victim01"})
    assert_ok(at)
    assert at.session_state["owner"] != "victim01"


def test_people_cancel_and_delete_only_their_own(share, monkeypatch: pytest.MonkeyPatch):
    mine_done = share.submit(small_params(seed=1), owner="me000001")
    play_worker(share, until="done")
    theirs_done = share.submit(small_params(seed=2), owner="them0001")
    play_worker(share, until="done")
    mine = share.submit(small_params(seed=3), owner="me000001")
    theirs = share.submit(small_params(seed=4), owner="them0001")

    at = shared_app(monkeypatch, owner="me000001", page=QUEUE)
    assert_ok(at)
    keys = {b.key for b in at.button}
    assert f"qcancel-{mine}" in keys and f"qcancel-{theirs}" not in keys
    with pytest.raises(auth.NotAllowed, match="only they or an admin"):
        auth.cancel(share, theirs, owner="me000001")
    assert share.get(theirs).status == "queued"

    at = shared_app(monkeypatch, owner="me000001", page=GALLERY)
    at.query_params["run"] = str(theirs_done)
    at.run()
    assert at.button(key="delete").disabled
    # Should a hand-made request get the dialog open anyway, its action still refuses.
    at.session_state[PENDING_DELETE] = theirs_done
    at.run()
    at.button(key="confirm_delete").click().run()
    assert "only they or an admin can delete it" in shown(texts(at))
    assert share.get(theirs_done).status == "done"

    at.query_params["run"] = str(mine_done)
    at.run()
    assert not at.button(key="delete").disabled
    at.button(key="delete").click().run()
    at.button(key="confirm_delete").click().run()
    assert_ok(at)
    assert share.count_runs() == 3


def test_people_edit_only_their_own_and_titles_stay_text(share, monkeypatch: pytest.MonkeyPatch):
    """Finding 4. Before: anyone could retitle, retag and (un)favourite anyone's run, and the
    title was drawn as Markdown (a link, a remote image) in the detail view and Compare."""
    hostile = "Prize! [claim it](http://evil.example/x) ![t](http://evil.example/t.png) http://evil.example"
    theirs = share.submit(small_params(seed=1), owner="them0001", title=hostile)
    play_worker(share, until="done")
    at = shared_app(monkeypatch, owner="me000001", page=GALLERY, query={"run": str(theirs)})
    assert_ok(at)
    assert at.toggle(key=f"favorite-{theirs}").disabled and at.text_input(key=f"title-{theirs}").disabled
    assert at.text_input(key=f"tags-{theirs}").disabled
    with pytest.raises(auth.NotAllowed, match="only they or an admin"):
        auth.set_title_tags(share, theirs, "mine now", "x", owner="me000001")
    with pytest.raises(auth.NotAllowed):
        auth.set_favorite(share, theirs, True, owner="me000001")
    assert not share.get(theirs).favorite and share.get(theirs).title == hostile
    heading = at.subheader[0].value
    assert shown(heading) == f"#{theirs} · {hostile}"  # what a person reads: the text as typed
    assert "](" not in heading and "http://" not in heading  # nothing Markdown could make a link of
    mine = share.submit(small_params(seed=2), owner="me000001")
    play_worker(share, until="done")
    at.query_params.clear()
    at.query_params["compare"] = f"{theirs},{mine}"
    at.run()
    captions = [c.value for c in at.caption if hostile[:5] in shown(c.value)]
    assert [shown(c) for c in captions] == [f"#{theirs} · {hostile}"] and "http://" not in captions[0]

    owner_at = shared_app(monkeypatch, owner="them0001", page=GALLERY, query={"run": str(theirs)})
    owner_at.toggle(key=f"favorite-{theirs}").set_value(True).run()
    assert share.get(theirs).favorite


def test_an_admin_cancels_and_deletes_anything(share, monkeypatch: pytest.MonkeyPatch):
    theirs = share.submit(small_params(seed=1), owner="them0001")
    at = shared_app(monkeypatch, role=auth.ADMIN, owner="boss0001", page=QUEUE)
    assert auth.role() == auth.ADMIN
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


def test_weights_files_on_the_server_are_for_the_admin(share, monkeypatch: pytest.MonkeyPatch):
    """The weights box takes typed paths; the Create page validates with params_form.validation_errors.
    (AppTest cannot type a new option into a selectbox, so this checks the rule directly.)"""
    p = small_params(weights="/etc/passwd")
    signed_in_as(monkeypatch, auth.USER)
    assert "in a shared studio, one of caffe, torchvision" in params_form.validation_errors(p)["weights"]
    assert "weights" not in params_form.validation_errors(small_params(weights="torchvision"))
    signed_in_as(monkeypatch, auth.ADMIN)
    assert "weights" not in params_form.validation_errors(p)
    monkeypatch.delenv(auth.SHARE_ENV)
    signed_in_as(monkeypatch, None)
    assert "weights" not in params_form.validation_errors(p)
