"""Small network helpers for tests that start servers (streamlit, the fake model)."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it, so parallel runs do not collide)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(log: Path | None, chars: int = 6000) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return log.read_text(errors="replace")[-chars:]


def wait_http_ok(url: str, proc: subprocess.Popen | None = None, log: Path | None = None,
                 timeout: float = 30.0, interval: float = 0.1) -> float:
    """Polls `url` until it answers 200 and returns the seconds it took.

    Fails at once, with the tail of `log`, if `proc` exits first: a crashed server should not
    cost the whole timeout.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s:\n{log_tail(log)}")
