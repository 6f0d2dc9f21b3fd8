"""A writer in a process of its own, for the multi-process tests (tests/faults/test_writer_processes.py).

It builds its ChatService the way the app does, `ChatService.from_settings(Settings.load(environ=...))`,
on the given database and model server, and sends `--turns` messages back to back to one
conversation. It prints one JSON line per event on stdout (flushed at once), so the test can follow
it even if it is killed:

    {"event": "ready"}                                   service built; waiting for --go-file, if given
    {"event": "first_piece", "turn": 0, "text": ...}     the reply to this turn has started streaming
    {"event": "turn", "turn": 0, "text": ..., "outcome": "answered", "error": null, "reply": ..., "seconds": 0.1}
    {"event": "finished", "turns": 20}

    python -m tests.support.writer_process --database-url URL --base-url URL --conversation ID \
        --name w1 --turns 20 [--go-file PATH] [--env BURROW_REQUEST_TIMEOUT=30 ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-writer-process-key")
    parser.add_argument("--conversation", required=True)
    parser.add_argument("--name", required=True, help="put in every message, so each one is unique")
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--go-file", help="wait until this file exists before the first turn")
    parser.add_argument("--go-timeout", type=float, default=60.0)
    parser.add_argument("--env", action="append", default=[], help="one more setting, NAME=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from core.chat import ChatService
    from core.runs import EventKind
    from core.settings import Settings

    environ = {"BURROW_DATABASE_URL": args.database_url, "OPENAI_BASE_URL": args.base_url,
               "OPENAI_API_KEY": args.api_key, "BURROW_MAX_RETRIES": "0", "BURROW_TRACKER_PROJECT": "off"}
    environ.update(item.split("=", 1) for item in args.env)
    service = ChatService.from_settings(Settings.load(environ=environ, secrets={}))
    try:
        emit(event="ready")
        if args.go_file:
            deadline = time.monotonic() + args.go_timeout
            while not Path(args.go_file).exists():
                if time.monotonic() > deadline:
                    emit(event="gave_up", reason="no go file")
                    return 2
                time.sleep(0.005)
        for turn in range(args.turns):
            text = f"{args.name} turn {turn}"
            began = time.monotonic()
            try:
                run = service.send(args.conversation, text)
            except Exception as exc:  # noqa: BLE001 - reported, the test decides
                emit(event="turn", turn=turn, text=text, outcome="not_started", error=f"{type(exc).__name__}: {exc}",
                     reply="", seconds=time.monotonic() - began)
                continue
            announced = False
            for event in run.events():
                if event is not None and event.kind is EventKind.DELTA and not announced:
                    emit(event="first_piece", turn=turn, text=text)
                    announced = True
            error = None if run.error is None else f"{type(run.error).__name__}: {run.error}"
            emit(event="turn", turn=turn, text=text, outcome=run.outcome, error=error, reply=run.text,
                 seconds=round(time.monotonic() - began, 4))
        emit(event="finished", turns=args.turns)
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
