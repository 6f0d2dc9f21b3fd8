"""bench/load.py stays runnable: a tiny run (3 users, 2 of them sharing a conversation) loses nothing."""
from __future__ import annotations

from bench import load


def test_a_small_load_run_has_no_errors_and_loses_nothing(capsys):
    status = load.main(["--sqlite-users", "3", "--turns", "3", "--shared", "2", "--first-byte", "0",
                        "--chunk-delay", "0", "--max-seconds", "60"])
    out = capsys.readouterr().out
    assert status == 0, out
    row = next(line for line in out.splitlines() if line.startswith("sqlite"))
    assert row.split()[1:4] == ["3", "2", "9"]  # users, shared, turns
    assert row.split()[-3:] == ["0", "0", "0"]  # errors, lost, misplaced


def test_the_loss_check_notices_a_missing_message(tmp_path):
    """The check itself can fail: a message that was 'sent' but never stored is reported lost."""
    url = f"sqlite:///{tmp_path / 'check.db'}"
    ghost = load.Sample(0, "c1", "u0-t0-ghost", 0.1, "answered", None, False, 0.0)
    lost, misplaced = load.find_losses(url, [ghost])
    assert lost == ["u0-t0-ghost (found 0 times)"] and misplaced == []
