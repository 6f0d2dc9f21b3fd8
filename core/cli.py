"""`burrow`: export, import and prune conversations from a shell, with the same settings as the app.

    burrow export CONVERSATION_ID [--format json|markdown|openai] [--branch APP_ID] [-o FILE]
    burrow export --all -o ARCHIVE.zip
    burrow import FILE            (prints the new conversation ids, one a line)
    burrow prune [--dry-run]      (deletes conversations idle past BURROW_RETENTION_DAYS, not pinned ones;
                                   prints each: id, last activity, title)
    burrow owner --to USER [--from SUBJECT] [--conversation ID]
                                  (hands conversations to a user who has signed in: by default all of
                                   the local user's, i.e. those from before sign-in was switched on)

Long work shows a progress bar on stderr when it is a terminal.

Exit status 0 on success; otherwise one line on stderr and 1 (bad input, unknown id), 2 (bad
usage or setting) or 3 (the database could not be used). The line is the message; the traceback is
logged at INFO (`BURROW_LOG_LEVEL=INFO` shows it), so a normal run prints nothing more.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from core.errors import BurrowError, InputError, StorageError
from core.settings import Settings, SettingsError, read_secrets_file
from core.users import MAINTENANCE

log = logging.getLogger("core.cli")
EXIT_INPUT, EXIT_USAGE, EXIT_STORAGE = 1, 2, 3


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="burrow", description="Export, import and prune Burrow conversations. Reads the "
                                  "same settings as the app: the environment (BURROW_DATABASE_URL, ...), then "
                                  "./.streamlit/secrets.toml.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = commands.add_parser("export", help="write a conversation (or all of them) to a file or stdout",
                                 description="Write one conversation as Burrow JSON (every branch, snapshot and "
                                 "rating; see docs/export-format.md), as Markdown or as an OpenAI messages list "
                                 "(one branch), or every conversation as a .zip of Burrow JSON files.")
    export.add_argument("conversation_id", nargs="?", help="the conversation (as in the app's ?c= link)")
    export.add_argument("--all", action="store_true", help="every conversation, as a .zip archive (needs -o)")
    export.add_argument("--format", choices=("json", "markdown", "openai"), default="json",
                        help="json (default, every branch), markdown or openai (one branch)")
    export.add_argument("--branch", help="the branch for markdown and openai (default: the latest)")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    imported = commands.add_parser("import", help="import a file, print the new conversation ids",
                                   description="Import Burrow JSON, a .zip of them, an OpenAI messages list or "
                                   "ChatGPT's conversations.json. A bad file imports nothing.")
    imported.add_argument("file", type=Path, help="the file to import")
    pruned = commands.add_parser("prune", help="delete conversations idle longer than BURROW_RETENTION_DAYS",
                                 description="Delete every conversation with no activity for BURROW_RETENTION_DAYS "
                                 "days (with its tracker files), except pinned ones; print each one. The app and "
                                 "the API server also do this on start and every hour.")
    pruned.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    owner = commands.add_parser("owner", help="hand conversations over to a signed-in user",
                                description="Give conversations to a user (their e-mail or subject; they must "
                                "have signed in once). By default every conversation of the local user: those "
                                "saved before BURROW_AUTH was switched on.")
    owner.add_argument("--to", required=True, help="the new owner: e-mail or subject")
    owner.add_argument("--from", dest="from_owner", default="local", help="the current owner's subject (default local)")
    owner.add_argument("--conversation", help="only this conversation")
    found = commands.add_parser("search", help="search message text and titles, print id, title and snippet per hit",
                                description="Full-text search (any text: never parsed as syntax); one line per "
                                "conversation, best first: id, title, snippet (matches in [brackets]).")
    found.add_argument("query", help="the words to look for (the last one may be a prefix)")
    found.add_argument("--limit", type=int, default=20, help="at most this many hits (default 20)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.load(secrets=read_secrets_file(Path(".streamlit") / "secrets.toml"))
        from core.logs import configure_logging

        configure_logging(settings)
        return _run(args, settings)
    except SettingsError as exc:
        return _failed(exc, EXIT_USAGE)
    except InputError as exc:
        return _failed(exc, EXIT_INPUT)
    except (StorageError, BurrowError) as exc:
        return _failed(exc, EXIT_STORAGE)
    except OSError as exc:  # the output file could not be written
        return _failed(exc, EXIT_INPUT)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "export" and args.all == bool(args.conversation_id):
        raise InputError("give either a CONVERSATION_ID or --all")
    if args.command == "export" and args.all and args.output is None:
        raise InputError("--all writes a .zip archive: say where with -o ARCHIVE.zip")
    from core.chat import ChatService
    from core.llm import OfflineModel

    if args.command == "prune" and settings.retention_days is None:
        raise SettingsError("BURROW_RETENTION_DAYS is not set: every conversation is kept, nothing to prune")
    service = ChatService.from_settings(settings, model=OfflineModel())
    try:
        if args.command == "prune":
            _prune(service, args.dry_run)
        elif args.command == "owner":
            subject, moved = service.as_user(MAINTENANCE).hand_over(args.to, args.from_owner, args.conversation)
            print(f"{moved} conversation(s) now belong to {subject}")
        elif args.command == "search":
            _search(service, args.query, args.limit)
        elif args.command == "import":
            with _progress("Importing", None) as tick:
                ids = service.import_file(args.file, progress=tick)
            for partition_key in ids:
                print(partition_key)
        elif args.all:
            with _progress("Exporting", service.count_conversations()) as tick:
                _atomically(args.output, lambda part: service.export_archive(part, progress=tick))
        elif args.output is None:
            _export(service, args, sys.stdout)
        else:
            _atomically(args.output, lambda part: _export_to(service, args, part))
    finally:
        service.close()
    return 0


@contextmanager
def _progress(what: str, total: int | None) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr when it is a terminal (never in a pipe or a log); yields the per-item tick."""
    if not sys.stderr.isatty():
        yield lambda _item: None
        return
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{what} conversations", total=total)
        yield lambda _item: bar.advance(task)


def _search(service, query: str, limit: int) -> None:  # noqa: ANN001 - ChatService
    for hit in service.search(query, limit):
        marked, last = [], 0
        for start, end in hit.spans:
            marked += [hit.snippet[last:start], "[", hit.snippet[start:end], "]"]
            last = end
        snippet = " ".join(("".join(marked) + hit.snippet[last:]).split())
        print(f"{hit.conversation_id}\t{hit.title or ''}\t{snippet}")


def _prune(service, dry_run: bool) -> None:  # noqa: ANN001 - ChatService
    """One line per conversation deleted (or that would be), then a count on stderr."""
    from core.retention import prune

    gone = prune(service, dry_run=dry_run, skip_if_busy=False)
    for item in gone:
        print(f"{item.partition_key}\t{item.updated_at.isoformat(timespec='seconds')}\t{item.title}")
    verb = "would delete" if dry_run else "deleted"
    print(f"burrow: {verb} {len(gone)} conversation{'' if len(gone) == 1 else 's'} idle for more than "
          f"{service.settings.retention_days:g} days", file=sys.stderr)


def _export(service, args: argparse.Namespace, out) -> None:  # noqa: ANN001 - ChatService, a text stream
    if args.format == "json":
        service.export_json(args.conversation_id, out)
    else:
        out.write(service.export_text(args.conversation_id, args.format, args.branch))


def _export_to(service, args: argparse.Namespace, path: Path) -> None:  # noqa: ANN001
    with path.open("w", encoding="utf-8", newline="") as out:
        _export(service, args, out)


def _atomically(target: Path, write) -> None:  # noqa: ANN001 - a function of the partial file's path
    """Writes to TARGET.part and renames it, so a failed export never leaves a half file under the name."""
    part = target.with_name(target.name + ".part")
    try:
        write(part)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _failed(exc: BaseException, code: int) -> int:
    log.info("burrow command failed", exc_info=exc)
    print(f"burrow: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
