"""The `burrow` command line: export and import, exit codes, one line on stderr, real databases."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.chat import ChatService
from core.cli import main
from core.llm import OfflineModel
from core.settings import Settings

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def database(db_url, monkeypatch, tmp_path) -> str:
    """The CLI's database (through BURROW_DATABASE_URL, as a user sets it), holding conversation c1."""
    monkeypatch.setenv("BURROW_DATABASE_URL", db_url)
    monkeypatch.setenv("BURROW_TRACKER_PROJECT", "off")
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml of the project's
    service = ChatService.from_settings(Settings(database_url=db_url, tracker_project=None), model=OfflineModel(0))
    try:
        for text in ("hello\nthere", "second"):
            run = service.send("c1", text)
            assert run.wait(10)
    finally:
        service.close()
    return db_url


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_json_to_stdout_and_import_it_back(database, capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "c1")
    assert (code, err) == (0, "")
    assert json.loads(out)["conversation"]["id"] == "c1"
    (tmp_path / "c1.json").write_text(out)
    code, out, err = run_cli(capsys, "import", str(tmp_path / "c1.json"))
    assert code == 0 and err == ""
    (new_id,) = out.split()
    assert new_id != "c1"  # c1 is taken
    code, copy, _ = run_cli(capsys, "export", new_id, "--format", "openai")
    code, original, _ = run_cli(capsys, "export", "c1", "--format", "openai")
    assert json.loads(copy) == json.loads(original) and len(json.loads(copy)) == 4


def test_export_markdown_to_a_file(database, capsys, tmp_path):
    code, out, err = run_cli(capsys, "export", "c1", "--format", "markdown", "-o", str(tmp_path / "c1.md"))
    assert (code, out, err) == (0, "", "")
    text = (tmp_path / "c1.md").read_text()
    assert text.startswith("# hello there\n\n## User\n\nhello  \nthere\n")
    assert not list(tmp_path.glob("*.part"))


def test_export_all_writes_an_archive_that_imports(database, capsys, tmp_path):
    code, _, err = run_cli(capsys, "import", str(DATA / "chatgpt_conversations.json"))
    assert code == 0
    code, out, err = run_cli(capsys, "export", "--all", "-o", str(tmp_path / "all.zip"))
    assert (code, err) == (0, "")
    with zipfile.ZipFile(tmp_path / "all.zip") as archive:
        assert len(archive.namelist()) == 3
    code, out, err = run_cli(capsys, "import", str(tmp_path / "all.zip"))
    assert code == 0 and len(out.split()) == 3


@pytest.mark.parametrize("args, expected", [
    (("export", "nope"), "burrow: No conversation 'nope'."),
    (("export", "c1", "--branch", "zzz", "--format", "markdown"), "burrow: Branch 'zzz' of this conversation does not exist."),
    (("export", "--all"), "burrow: --all writes a .zip archive: say where with -o ARCHIVE.zip"),
    (("export",), "burrow: give either a CONVERSATION_ID or --all"),
    (("import", str(DATA / "chatgpt_orphan.json")),
     "burrow: chatgpt_orphan.json: item 2: node abc has no parent in the mapping (it names 'gone')"),
    (("import", "missing.json"), "burrow: missing.json: cannot be read (No such file or directory)."),
], ids=["unknown id", "unknown branch", "all without -o", "no id", "bad file", "no file"])
def test_bad_input_exits_1_with_one_line(database, capsys, args, expected):
    code, out, err = run_cli(capsys, *args)
    assert (code, out, err) == (1, "", expected + "\n")


def test_database_down_exits_3_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BURROW_DATABASE_URL", "postgresql+psycopg://burrow@127.0.0.1:9/none")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "import", str(DATA / "openai_messages.json"))
    assert code == 3 and out == "" and err.count("\n") == 1 and "is not available" in err


def test_a_bad_setting_exits_2_naming_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BURROW_MAX_RETRIES", "many")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "export", "c1")
    assert code == 2 and err.startswith("burrow: ") and "BURROW_MAX_RETRIES" in err and err.count("\n") == 1


def test_the_installed_script_has_help_on_each_command():
    script = Path(sys.executable).parent / "burrow"
    assert script.exists(), "pip install -e . installs the burrow script (pyproject [project.scripts])"
    for args in ([], ["export"], ["import"], ["search"], ["owner"]):
        done = subprocess.run([str(script), *args, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage: burrow" in done.stdout
    assert "--format" in subprocess.run([str(script), "export", "--help"], capture_output=True, text=True).stdout
    unknown = subprocess.run([str(script), "serach", "x"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(database, tmp_path):
    env = {**os.environ, "COLUMNS": "100"}
    script = str(Path(sys.executable).parent / "burrow")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([script, "export", "--all", "-o", str(tmp_path / "a.zip")], stderr=follower,
                              stdout=subprocess.PIPE, env=env, timeout=60)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0 and b"Exporting conversations" in shown
    piped = subprocess.run([script, "export", "--all", "-o", str(tmp_path / "b.zip")], capture_output=True,
                           env=env, timeout=60)
    assert (piped.returncode, piped.stderr) == (0, b"")


def test_owner_hands_the_local_users_conversations_to_a_signed_in_user(database, capsys):
    """`burrow owner`: what was saved before sign-in goes to a user who has signed in, no one else's."""
    from core.users import User

    service = ChatService.from_settings(Settings(database_url=database, tracker_project=None), model=OfflineModel(0))
    try:
        alice = User("oidc:https://id.example|alice", "alice@example.com", "Alice")
        old = service.new_conversation_id()
        "".join(service.send(old, "from before sign-in"))
        service.signed_in(alice)
        assert main(["owner", "--to", "nobody@example.com"]) == 1
        assert main(["owner", "--to", "ALICE@example.com"]) == 0
        assert "2 conversation(s) now belong to oidc:https://id.example|alice" in capsys.readouterr().out
        assert {c.partition_key for c in service.as_user(alice).conversations()} == {old, "c1"}
        assert {c.owner for c in service.conversations()} == {alice.subject}  # none mode lists everything
    finally:
        service.close()
