"""An OpenAI-compatible HTTP server on loopback, stdlib only, for tests.

The real `openai` client talks to it through `base_url`, so its retries, timeouts, streaming parser
and exception types are exercised exactly as against the real service; only the model is fake.

    server = FakeOpenAI().start()           # server.base_url == "http://127.0.0.1:<port>/v1"
    server.reply = "Hi there"               # or a callable: messages -> str
    server.fail_next(429, retry_after=1)    # FIFO queue of injected errors (any endpoint)
    server.fail_next(400, echo_authorization=True)  # the error body quotes the Authorization header
    server.first_byte_delay = 2.0           # nothing is sent for 2 s (client timeouts)
    server.break_after_chunks = 3           # the stream dies after 3 text chunks
    server.send_usage = False               # no usage chunk even when the client asks (include_usage)
    server.reject_stream_options = True     # 400 for requests with stream_options, as some older servers
    server.finish_reason = "length"         # the last chunk's finish reason (default "stop")
    server.requests                         # JSON bodies of chat completion requests
    server.received_headers[-1]["authorization"]
    server.reset(); server.stop()

Endpoints: POST /v1/chat/completions (plain and SSE), POST /v1/moderations, GET /v1/models.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Reply = str | Callable[[list[dict[str, Any]]], str]

DEFAULT_MODEL = "fake-model"
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
)
# status -> (error type, error code, message) as the real API words them
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model}. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def echo_reply(messages: list[dict[str, Any]]) -> str:
    """Default reply: shows which message the model saw last, so tests can tell turns apart."""
    return f"Echo: {messages[-1].get('content', '') if messages else ''}"


def mask_key(authorization: str | None) -> str:
    """Masks a key the way OpenAI does in 401 messages, so secrets never appear whole in errors."""
    key = (authorization or "").removeprefix("Bearer ").strip()
    if not key:
        return "(none)"
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "*" * 8


@dataclass(frozen=True)
class Failure:
    """One queued error response."""

    status: int
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    echo_authorization: bool = False  # like some servers, quote the request's Authorization header


@dataclass(frozen=True)
class Behaviour:
    """The settings one request is served with, copied when it arrives (tests may change them mid-flight)."""

    reply: Reply
    chunk_delay: float
    words_per_chunk: int
    first_byte_delay: float
    break_after_chunks: int | None
    flagged_word: str
    expected_api_key: str | None
    send_usage: bool = True
    reject_stream_options: bool = False
    finish_reason: str = "stop"


class FakeOpenAI:
    """The server and its knobs; every public attribute may be changed between (or during) requests."""

    def __init__(self, reply: Reply = echo_reply, *, chunk_delay: float = 0.0, words_per_chunk: int = 1,
                 flagged_word: str = "violence") -> None:
        self._defaults = {"reply": reply, "chunk_delay": chunk_delay, "words_per_chunk": words_per_chunk,
                          "flagged_word": flagged_word}
        self._lock = threading.Lock()
        self._failures: deque[Failure] = deque()
        self._httpd: _Server | None = None
        self.requests: list[dict[str, Any]] = []             # chat completion bodies, in order
        self.moderation_requests: list[dict[str, Any]] = []  # moderation bodies, in order
        self.received_headers: list[dict[str, str]] = []     # every request's headers (lower-case names)
        self.reset()

    # ---- configuration ---------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the constructor's behaviour, with no queued errors and nothing recorded."""
        with self._lock:
            self.reply: Reply = self._defaults["reply"]
            self.chunk_delay: float = self._defaults["chunk_delay"]
            self.words_per_chunk: int = self._defaults["words_per_chunk"]
            self.flagged_word: str = self._defaults["flagged_word"]
            self.first_byte_delay: float = 0.0
            self.break_after_chunks: int | None = None
            self.expected_api_key: str | None = None  # set: other keys get 401 invalid_api_key
            self.send_usage: bool = True  # a usage chunk ends the stream when the client asks for it
            self.reject_stream_options: bool = False
            self.finish_reason: str = "stop"
            self._failures.clear()
            self.requests.clear()
            self.moderation_requests.clear()
            self.received_headers.clear()

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None,
                  retry_after_ms: float | None = None, message: str | None = None,
                  echo_authorization: bool = False) -> None:
        """Answers the next `times` requests with `status`; retry_after (s) / retry_after_ms become headers.

        `echo_authorization` appends the request's Authorization header, unmasked, to the error message,
        as some model servers do: Burrow must keep that key out of its logs and messages.
        """
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = _number(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = _number(retry_after_ms)
        with self._lock:
            self._failures.extend([Failure(status, message, headers, echo_authorization)] * times)

    @property
    def headers(self) -> list[dict[str, str]]:
        """Alias of `received_headers`."""
        return self.received_headers

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAI is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeOpenAI:
        self._httpd = _Server((host, port), _Handler, self)
        # A short poll interval: shutdown() waits for it (the default 0.5 s adds up over a session).
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                         name="fake-openai").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- used by the handler ---------------------------------------------------------------
    def _receive(self, headers: dict[str, str], body: dict[str, Any] | None,
                 log: list[dict[str, Any]] | None) -> tuple[Behaviour, Failure | None]:
        """Records one request; returns its behaviour and the queued failure it consumes, if any."""
        with self._lock:
            self.received_headers.append(headers)
            if log is not None and body is not None:
                log.append(body)
            failure = self._failures.popleft() if self._failures else None
            behaviour = Behaviour(self.reply, self.chunk_delay, max(1, self.words_per_chunk),
                                  self.first_byte_delay, self.break_after_chunks, self.flagged_word,
                                  self.expected_api_key, self.send_usage, self.reject_stream_options,
                                  self.finish_reason)
        return behaviour, failure


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---- response bodies ------------------------------------------------------------------------
def error_body(status: int, message: str | None, model: str, authorization: str | None,
               echo_authorization: bool = False) -> dict[str, Any]:
    kind, code, template = ERRORS.get(status, ("api_error", None, "Injected error {status}."))
    text = message or template.format(key=mask_key(authorization), model=model, status=status)
    if echo_authorization:
        text += f" (request had Authorization: {authorization})"
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


def completion_body(cid: str, model: str, text: str) -> dict[str, Any]:
    words = len(text.split())
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": 1 + words}}


def usage_body(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
    """Token counts the fake reports: words of the prompt's messages and of the reply."""
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chunk_body(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def split_reply(text: str, words_per_chunk: int) -> list[str]:
    """"The quick fox" -> ["The", " quick", " fox"]: joined back, the pieces give the text exactly."""
    words = text.split(" ")
    pieces = [" ".join(words[i:i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]
    return [piece if i == 0 else " " + piece for i, piece in enumerate(pieces)]


def moderation_inputs(raw: Any) -> list[str]:
    """The texts of a moderation `input`: a string, a list of strings, or a list of typed parts."""
    items = raw if isinstance(raw, list) else [raw]
    return [item if isinstance(item, str) else str(item.get("text", "")) if isinstance(item, dict) else ""
            for item in items]


def moderation_result(text: str, flagged_word: str) -> dict[str, Any]:
    flagged = bool(flagged_word) and flagged_word.lower() in text.lower()
    return {
        "flagged": flagged,
        "categories": {name: flagged and name == "violence" for name in MODERATION_CATEGORIES},
        "category_scores": {name: 0.97 if flagged and name == "violence" else 0.0001
                            for name in MODERATION_CATEGORIES},
        "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
    }


# ---- HTTP ---------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeOpenAI):
        super().__init__(address, handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, cancelled streams) are normal here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keeps pytest output clean
        pass

    def do_GET(self) -> None:
        behaviour = self._begin(None, None)
        if behaviour is None:
            return
        if self._route() == "models":
            self._json(200, {"object": "list", "data": [
                {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "burrow-tests"}]})
        else:
            self._error(404, f"Unknown path {self.path}")

    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:  # never from the openai client; not recorded
            return self._error(400, "The request body is not valid JSON.")
        route = self._route()
        fake = self.server.fake
        log = {"chat": fake.requests, "moderations": fake.moderation_requests}.get(route)
        behaviour = self._begin(body, log)
        if behaviour is None:
            return
        if route == "chat":
            self._chat(body, behaviour)
        elif route == "moderations":
            self._moderate(body, behaviour)
        else:
            self._error(404, f"Unknown path {self.path}")

    # ---- steps ----------------------------------------------------------------------------
    def _route(self) -> str:
        path = urlsplit(self.path).path.rstrip("/")
        for suffix, route in (("/chat/completions", "chat"), ("/moderations", "moderations"), ("/models", "models")):
            if path.endswith(suffix):
                return route
        return "unknown"

    def _header_dict(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _begin(self, body: dict[str, Any] | None, log: list[dict[str, Any]] | None) -> Behaviour | None:
        """Records the request, waits `first_byte_delay`, sends the error due if any (then returns None)."""
        behaviour, failure = self.server.fake._receive(self._header_dict(), body, log)
        if behaviour.first_byte_delay:
            time.sleep(behaviour.first_byte_delay)
        authorization = self.headers.get("Authorization")
        if failure is not None:
            self._error(failure.status, failure.message, failure.headers, body, failure.echo_authorization)
            return None
        if behaviour.expected_api_key is not None and authorization != f"Bearer {behaviour.expected_api_key}":
            self._error(401, None, {}, body)
            return None
        return behaviour

    def _chat(self, body: dict[str, Any], behaviour: Behaviour) -> None:
        messages = body.get("messages") or []
        try:
            text = behaviour.reply(messages) if callable(behaviour.reply) else str(behaviour.reply)
        except Exception as exc:  # a broken test callable shows up as a readable 500, not a hang
            return self._error(500, f"fake reply callable failed: {exc!r}")
        cid, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", str(body.get("model") or DEFAULT_MODEL)
        if "stream_options" in body and behaviour.reject_stream_options:
            return self._error(400, "Unrecognized request argument supplied: stream_options")
        if body.get("stream"):
            asked = bool((body.get("stream_options") or {}).get("include_usage"))
            usage = usage_body(messages, text) if asked and behaviour.send_usage else None
            self._stream(cid, model, text, behaviour, usage)
        else:
            self._json(200, completion_body(cid, model, text))

    def _stream(self, cid: str, model: str, text: str, behaviour: Behaviour,
                usage: dict[str, int] | None = None) -> None:
        """SSE over chunked encoding; with break_after_chunks, hangs up mid-body like a dropped connection."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._event(chunk_body(cid, model, {"role": "assistant", "content": ""}))
            for sent, piece in enumerate(split_reply(text, behaviour.words_per_chunk)):
                if behaviour.break_after_chunks is not None and sent >= behaviour.break_after_chunks:
                    return self._hang_up()
                self._event(chunk_body(cid, model, {"content": piece}))
                if behaviour.chunk_delay:
                    time.sleep(behaviour.chunk_delay)
            if behaviour.break_after_chunks is not None:  # the break comes before the final chunk
                return self._hang_up()
            self._event(chunk_body(cid, model, {}, behaviour.finish_reason))
            if usage is not None:  # stream_options.include_usage: one more chunk, no choices, the counts
                self._event({**chunk_body(cid, model, {}), "choices": [], "usage": usage})
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")  # end of the chunked body
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (timeout, cancelled stream)

    def _moderate(self, body: dict[str, Any], behaviour: Behaviour) -> None:
        if "input" not in body:
            return self._error(400, "Missing required parameter: 'input'.")
        results = [moderation_result(text, behaviour.flagged_word) for text in moderation_inputs(body["input"])]
        self._json(200, {"id": f"modr-{uuid.uuid4().hex[:24]}",
                         "model": str(body.get("model") or "omni-moderation-latest"), "results": results})

    # ---- writing ----------------------------------------------------------------------------
    def _error(self, status: int, message: str | None, headers: dict[str, str] | None = None,
               body: dict[str, Any] | None = None, echo_authorization: bool = False) -> None:
        model = str((body or {}).get("model") or DEFAULT_MODEL)
        self._json(status, error_body(status, message, model, self.headers.get("Authorization"), echo_authorization),
                   headers)

    def _json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client timed out before we answered

    def _event(self, obj: dict[str, Any]) -> None:
        self._write_chunk(f"data: {json.dumps(obj)}\n\n".encode())

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _hang_up(self) -> None:
        """Closes our side without the terminating chunk: the client sees an incomplete body."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already gone


if __name__ == "__main__":  # by hand: python -m tests.support.fake_openai 8001
    server = FakeOpenAI(chunk_delay=0.05).start(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8001)
    print(f"fake OpenAI at {server.base_url}", flush=True)
    threading.Event().wait()
