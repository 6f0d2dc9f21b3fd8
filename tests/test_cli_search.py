"""`burrow search QUERY`: real chat turns (the service, the offline model) are found by their words,
one line per hit (id, title, snippet with [matches]); odd input exits 0."""
from __future__ import annotations

from tests.test_cli import database, run_cli  # noqa: F401 - the fixture

__all__ = ["database"]


def test_search_prints_id_title_and_marked_snippet(database, capsys):  # noqa: F811
    code, out, err = run_cli(capsys, "search", "seco")
    assert code == 0 and err == ""
    [line] = out.splitlines()
    key, _title, snippet = line.split("\t")
    assert key == "c1" and "[second]" in snippet.lower()


def test_odd_queries_exit_0(database, capsys):  # noqa: F811
    for query in ['"', "((", "NEAR(", "*", "-"]:
        assert run_cli(capsys, "search", query)[0] == 0
