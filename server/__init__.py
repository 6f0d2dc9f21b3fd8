"""Burrow's HTTP API: a thin FastAPI layer over the ChatService facade (core/chat.py).

`create_app()` builds the app; `python -m server` (or `make serve`) runs it with uvicorn.
"""
