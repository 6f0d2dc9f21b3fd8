"""Start-up problems (database down, bad settings) show a help page, and the app recovers without a restart."""
from __future__ import annotations

from apptest_helpers import button, messages, ok, wait_for

from ui.format import clip, escape_markdown, relative_time


def test_an_unreachable_database_explains_what_to_check_and_recovers(make_app, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    monkeypatch.setenv("BURROW_DATABASE_URL", f"sqlite:///{blocker}/data/burrow.db")
    at = ok(make_app().run())
    assert "database is not available" in at.error[0].value
    assert any("BURROW_DATABASE_URL" in m.value for m in at.markdown)
    assert not at.chat_input
    blocker.unlink()  # the cause is fixed while the server keeps running
    ok(button(at, "Try again").click().run())
    assert not at.error
    ok(at.chat_input[0].set_value("back online").run())
    # The reply is written by the service; on a slow machine the page's run can end before it is saved,
    # and the next run (a reload) shows it from the database.
    wait_for(lambda: messages(at)[-1] == ("assistant", "Echo: back online") or (ok(at.run()) and False)
             or messages(at)[-1] == ("assistant", "Echo: back online"), what="the reply after recovery")
    assert [m for m in messages(at) if m[1].endswith("back online")] == [("user", "back online"),
                                                                          ("assistant", "Echo: back online")]


def test_a_postgres_server_that_is_down_is_reported_without_the_password(make_app, monkeypatch):
    monkeypatch.setenv("BURROW_DATABASE_URL", "postgresql+psycopg://burrow:s3cret@127.0.0.1:9/burrow")
    at = ok(make_app().run())
    assert "database is not available" in at.error[0].value
    page_text = " ".join(e.value for e in at.error) + " ".join(m.value for m in at.markdown)
    assert "s3cret" not in page_text


def test_a_database_from_a_newer_release_says_so_instead_of_an_outage(make_app, monkeypatch, tmp_path):
    from sqlalchemy import create_engine, text

    from core.storage.migrations import HEAD, VERSION_TABLE, upgrade

    engine = create_engine(f"sqlite:///{tmp_path}/newer.db")
    upgrade(engine)
    with engine.begin() as conn:  # what a later release leaves behind: a revision this one does not know
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '{int(HEAD) + 1:04d}'"))
    engine.dispose()
    monkeypatch.setenv("BURROW_DATABASE_URL", f"sqlite:///{tmp_path}/newer.db")
    at = ok(make_app().run())
    assert "belongs to a newer Burrow" in at.error[0].value
    assert "Upgrade Burrow" in at.error[0].value
    assert "not available" not in at.error[0].value
    assert not any("server is running" in m.value for m in at.markdown)
    assert not at.chat_input


def test_an_invalid_setting_names_the_variable(make_app, monkeypatch):
    monkeypatch.setenv("BURROW_REQUEST_TIMEOUT", "soon")
    at = ok(make_app().run())
    assert "settings are not valid" in at.error[0].value
    assert "BURROW_REQUEST_TIMEOUT" in at.error[0].value


def test_relative_times_read_naturally():
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
    assert relative_time(now - timedelta(seconds=20), now) == "just now"
    assert relative_time(now - timedelta(minutes=5), now) == "5 min ago"
    assert relative_time(now - timedelta(hours=3), now) == "3 h ago"
    assert relative_time(now - timedelta(days=1, hours=2), now) == "yesterday"
    assert relative_time(now - timedelta(days=4), now) == "4 days ago"
    assert relative_time(datetime(2026, 1, 2, tzinfo=timezone.utc), now) == "2 Jan"
    assert relative_time(datetime(2024, 1, 2, tzinfo=timezone.utc), now) == "2 Jan 2024"


def test_user_titles_cannot_inject_markdown():
    assert escape_markdown("[click](http://x) :red[boo]") == r"\[click\]\(http\://x\) \:red\[boo\]"
    assert clip("a  very\nlong title", 10) == "a very lo…"


def _allow_connections(pg_url: str, allowed: bool) -> None:
    """Opens or closes the test database to new connections and ends the open ones: an outage, for real."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": url.database})
    admin.dispose()


def test_a_database_outage_after_start_shows_help_and_recovers(make_app, monkeypatch, pg_url):
    monkeypatch.setenv("BURROW_DATABASE_URL", pg_url)
    at = ok(make_app().run())
    ok(at.chat_input[0].set_value("before the outage").run())
    _allow_connections(pg_url, False)
    try:
        ok(at.run())
        assert "database is not available" in at.error[0].value
    finally:
        _allow_connections(pg_url, True)
    ok(button(at, "Try again").click().run())
    assert not at.error
    assert messages(at)[-1] == ("assistant", "Echo: before the outage")


def test_settings_come_from_secrets_toml_too(app):
    app.secrets["BURROW_MODEL"] = "model-from-secrets"
    ok(app.run())
    assert any("model-from-secrets via" in m.value and "badge" in m.value for m in app.markdown)
