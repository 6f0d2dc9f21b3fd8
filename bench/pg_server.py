"""A throwaway PostgreSQL server for the benchmark (`--start-postgres`), with the default settings.

PostgreSQL refuses to run as root, so when the benchmark runs as root the server runs as the
`postgres` OS user (`setpriv`), in a temporary directory handed to that user. Trust auth on
127.0.0.1 only; the directory is removed on stop.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import contextlib
from collections.abc import Iterator
from pathlib import Path

OS_USER = "postgres"


def find_bin_dir() -> Path:
    """The newest installed PostgreSQL binaries (Debian layout first, then PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL binaries (pg_ctl, initdb) not found; install postgresql or pass --pg-url")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """`with ThrowawayPostgres() as pg: pg.url` — a fresh cluster, stopped and deleted afterwards."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="burrow-bench-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.user = OS_USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["setpriv", f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "ThrowawayPostgres":
        if self.as_root:
            shutil.chown(self.root, OS_USER, OS_USER)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options)
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def postgres_url(url: str | None, start: bool) -> Iterator[str | None]:
    """The benchmarks' PostgreSQL: a given URL, a throwaway server (`start`), or none (SQLite only)."""
    if url:
        yield url
    elif start:
        with ThrowawayPostgres() as server:
            yield server.url
    else:
        yield None
