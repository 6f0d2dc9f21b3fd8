"""The fake model of `make bench-api`: the tests' fake OpenAI server in a process of its own, as in
bench/load.py, but with a listen backlog for hundreds of users connecting at once (the standard
library's default of 5 drops connections in a burst, and the retried SYNs cost seconds)."""
from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

from bench.load import FILLER, ModelSpec, model_reply

BACKLOG = 1024


def _serve(spec: ModelSpec, ready: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    ThreadingHTTPServer.request_queue_size = BACKLOG  # this child process only: its server's listen() backlog
    from tests.support.fake_openai import FakeOpenAI

    padding = " " + " ".join(FILLER[i % len(FILLER)] for i in range(spec.chunks - 3))
    server = FakeOpenAI(lambda messages: model_reply(messages) + padding, chunk_delay=spec.chunk_delay)
    server.start("127.0.0.1", 0)
    server.first_byte_delay = spec.first_byte
    ready.put(server.base_url)
    stop.wait()
    server.stop()


@contextlib.contextmanager
def fake_model(spec: ModelSpec) -> Iterator[str]:
    """Starts the fake OpenAI server in a child process; yields its base URL."""
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_serve, args=(spec, ready, stop), daemon=True)
    process.start()
    try:
        yield ready.get(timeout=30)
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.terminate()
