"""`python -m server`: the HTTP API on BURROW_API_HOST:BURROW_API_PORT (default 127.0.0.1:8000)."""
from __future__ import annotations

import uvicorn

from core.settings import Settings
from server.app import create_app


def main() -> None:
    settings = Settings.load()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


if __name__ == "__main__":
    main()
