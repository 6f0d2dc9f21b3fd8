"""Chat models: any OpenAI-compatible server through the `openai` SDK, or the built-in offline model.

Both stream text pieces and stop early when the caller's cancel event is set. Every failure of a
real model becomes one `LLMError` whose message tells the user what to do about it. The API key
lives only inside the SDK client: it is never put into Burr state, the tracker or a log line, and
an error text a server sends back passes through a `Redactor` first (some servers quote the key).
The failure itself is logged once, by the turn that shows it (core/chat.py), not here.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol
from urllib.parse import urlparse

import openai
import orjson

from core.errors import LLMError
from core.facts import FINISH_STOP, StreamReport
from core.logs import Redactor
from core.settings import Settings

log = logging.getLogger(__name__)

Message = dict[str, str]


class ChatModel(Protocol):
    """What the Burr actions need from a model."""

    label: str
    offline: bool

    def stream(self, messages: Sequence[Message], cancel: threading.Event | None = None,
               report: StreamReport | None = None) -> Iterator[str]:
        """Yields reply text pieces as they arrive; stops early once `cancel` is set. What the model
        says about the reply (its name, usage, finish reason) goes into `report` when one is given."""
        ...

    def moderate(self, text: str) -> bool:
        """True when the text is flagged by the provider's moderation endpoint."""
        ...


QUOTE_CHARS = 500  # of the user's message, in the offline model's echo
RETRIED_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})  # what the openai client asks again after


class OfflineModel:
    """A deterministic stand-in so the whole app works with no account and no network."""

    offline = True
    label = "Offline demo model (no API key set)"

    def __init__(self, word_delay: float = 0.02):
        self.word_delay = word_delay

    def reply_text(self, messages: Sequence[Message]) -> str:
        """Echoes the last message as a quote that keeps its formatting (line breaks, lists, code);
        how to connect a real model is said in the first reply of a conversation only."""
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        turns = sum(1 for m in messages if m.get("role") == "user")
        quoted = last if len(last) <= QUOTE_CHARS else last[:QUOTE_CHARS].rsplit("\n", 1)[0] + "…"
        quote = "\n".join(f"> {line}" if line.strip() else ">" for line in quoted.split("\n"))
        text = f"**[Offline demo model]** This is reply #{turns} of this conversation. You wrote:\n\n{quote}"
        if turns == 1:
            text += ("\n\nNo language model is connected, so I can only echo. To talk to a real model, set "
                     "`OPENAI_API_KEY` (OpenAI) or `OPENAI_BASE_URL` (Ollama, vLLM, llama.cpp, LM Studio) "
                     "and restart Burrow.")
        return text

    def stream(self, messages: Sequence[Message], cancel: threading.Event | None = None,
               report: StreamReport | None = None) -> Iterator[str]:
        if report is not None:
            report.model = "offline demo"
        words = self.reply_text(messages).split(" ")
        for index, word in enumerate(words):
            if cancel is not None and cancel.is_set():
                return
            yield word if index == 0 else " " + word
            if self.word_delay:
                time.sleep(self.word_delay)
        if report is not None:
            report.finish_reason = FINISH_STOP

    def moderate(self, text: str) -> bool:
        return False


class OpenAIChatModel:
    """Chat completions with `stream=True` against OpenAI or any compatible server."""

    offline = False

    def __init__(self, settings: Settings):
        self.model = settings.model
        self._calls = threading.local()  # the reply this thread is asking for (the client is shared)
        self.client = openai.OpenAI(
            # Local servers (Ollama, vLLM...) ignore the key, but the SDK insists on one.
            api_key=settings.openai_api_key or "no-key-needed",
            base_url=settings.openai_base_url,
            timeout=settings.request_timeout,
            max_retries=settings.max_retries,
            http_client=openai.DefaultHttpxClient(
                event_hooks={"request": [self._on_request], "response": [self._on_response]}),
        )
        self._redact = Redactor([settings.openai_api_key])  # for error texts the server sends back
        host = urlparse(settings.openai_base_url).netloc if settings.openai_base_url else "api.openai.com"
        self.label = f"{settings.model} via {host}"
        self._usage_option = True  # ask for usage in the stream until the server says it cannot
        self.max_retries = settings.max_retries

    def stream(self, messages: Sequence[Message], cancel: threading.Event | None = None,
               report: StreamReport | None = None) -> Iterator[str]:
        report = report if report is not None else StreamReport()
        self._calls.report = report
        started = False  # once the reply has begun, a lost connection means a cut-off reply
        try:
            response = self._create(list(messages))
            started = True
            with contextlib.closing(response):
                for chunk in _chunks(response):
                    if cancel is not None and cancel.is_set():
                        return  # leaving the `with` closes the HTTP stream: the server stops generating
                    text = _read_chunk(chunk, report, self.model)
                    if text:
                        yield text
        except openai.OpenAIError as exc:
            # Recent SDKs wrap a stream dropped mid-reply as APIConnectionError ("could not reach").
            broken = started and isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)
            raise (_stream_broken() if broken else translate_error(exc, self._redact)) from exc
        except Exception as exc:  # older SDKs let httpx errors of a broken stream through unwrapped
            if exc.__class__.__module__.startswith(("httpx", "httpcore")):
                raise _stream_broken() from exc
            raise

    def _on_request(self, request: Any) -> None:
        """Every request the client sends for a reply; from the second on, the client is retrying
        (said here when no answer announced it: the server could not be reached)."""
        report: StreamReport | None = getattr(self._calls, "report", None)
        if report is None or not request.url.path.endswith("/chat/completions"):
            return
        report.attempts += 1
        if report.attempts > 1 and report.last_status is None:
            self._announce(report, "could not be reached", report.attempts - 1)
        report.last_status = None

    def _on_response(self, response: Any) -> None:
        """An answer the client retries (429, 5xx...): said at once, so it shows during the client's wait."""
        report: StreamReport | None = getattr(self._calls, "report", None)
        if report is None or response.status_code < 400:
            return
        report.last_status = response.status_code
        if response.status_code in RETRIED_STATUSES and report.attempts <= self.max_retries:
            self._announce(report, f"answered {response.status_code}", report.attempts)

    def _announce(self, report: StreamReport, what: str, retry: int) -> None:
        if report.on_retry is not None:
            report.on_retry(f"The model server {what}; retrying ({retry} of {self.max_retries})…")

    def _create(self, messages: list[Message]) -> Any:
        """Starts the stream, asking for token usage; a server that rejects `stream_options` (some
        older OpenAI-compatible ones) is asked again without it, and never again by this client."""
        if self._usage_option:
            try:
                return self._request(messages, stream_options={"include_usage": True})
            except openai.BadRequestError as exc:
                if "stream_options" not in str(exc):
                    raise
                log.info("The model server does not accept stream_options; replies will have no token counts")
                self._usage_option = False
        return self._request(messages)

    def _request(self, messages: list[Message], **options: Any) -> Any:
        """The streaming request. The history goes in as the request body's `messages` directly
        (`extra_body` replaces the key): the SDK's own walk over typed parameters costs time in
        proportion to the history (about a second per turn at 2,000 messages) and changes nothing in
        plain role/content dicts of strings, which is all model_messages makes."""
        # Entered here, so a status error (after the SDK's retries) is raised to _create's fallback.
        return self.client.chat.completions.with_streaming_response.create(
            model=self.model, messages=[], stream=True, extra_body={"messages": messages}, **options).__enter__()

    def moderate(self, text: str) -> bool:
        try:
            return bool(self.client.moderations.create(input=text).results[0].flagged)
        except openai.OpenAIError as exc:
            raise translate_error(exc, self._redact) from exc


def _chunks(response: Any) -> Iterator[dict[str, Any]]:
    """The stream's chunks as plain dicts, parsed with orjson from the raw SSE lines. The SDK's own
    Stream builds a pydantic object per chunk (about a quarter of a turn's CPU in the API server);
    the request, its retries, timeouts and status errors stay the SDK's, and an `error` chunk is
    raised as the SDK raises it."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
            continue
        if line or not data:
            continue  # comments, event:/id: fields, blank lines between events
        payload, data = "\n".join(data), []
        if payload.startswith("[DONE]"):
            return
        chunk = orjson.loads(payload)
        if isinstance(chunk, dict) and chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(message if isinstance(message, str) and message
                                  else "An error occurred during streaming",
                                  request=response.http_request, body=error)
        yield chunk


def _read_chunk(chunk: dict[str, Any], report: StreamReport, requested: str) -> str | None:
    """The text of one stream chunk; its model name, finish reason and usage go into the report."""
    report.model = chunk.get("model") or report.model or requested
    usage = chunk.get("usage")
    if usage:  # with include_usage: a last chunk with no choices carries the counts
        report.tokens_in, report.tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    choices = chunk.get("choices")
    if not choices:
        return None
    choice = choices[0]
    if choice.get("finish_reason"):
        report.finish_reason = choice["finish_reason"]
    delta = choice.get("delta")
    return delta.get("content") if delta else None


def _stream_broken() -> LLMError:
    return LLMError("stream_broken", "The model's reply was cut off mid-stream. Retry to ask again.")


def translate_error(exc: openai.OpenAIError, redact: Callable[[str], str] | None = None) -> LLMError:
    """Maps the SDK's exception zoo onto one type with a message a user can act on.

    Some messages quote the server's error text, which may repeat the API key: `redact` (default:
    token-shaped strings only) takes it out before the user or a log line sees it.
    """
    error = _translate(exc)
    message = (redact or Redactor())(str(error))
    return error if message == str(error) else LLMError(error.kind, message, error.retry_after)


def _translate(exc: openai.OpenAIError) -> LLMError:
    """The LLMError for each kind of SDK error, before redaction."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMError("timeout", "The model took too long to answer. Try again, or raise BURROW_REQUEST_TIMEOUT.")
    if isinstance(exc, openai.APIConnectionError):
        return LLMError("connection", "Could not reach the model server. Check OPENAI_BASE_URL and that the server is running.")
    if isinstance(exc, openai.AuthenticationError):
        return LLMError("auth", "The model server rejected the API key. Check OPENAI_API_KEY.")
    if isinstance(exc, openai.RateLimitError):
        retry_after = _retry_after(exc)
        # The header may ask for milliseconds; never tell a person to wait "about 0 s".
        wait = f" Wait about {max(1, math.ceil(retry_after))} s and retry." if retry_after else " Wait a moment and retry."
        return LLMError("rate_limit", "The model server is rate-limiting requests (429)." + wait, retry_after)
    if isinstance(exc, openai.NotFoundError):
        return LLMError("not_found", "The model server does not know this model. Check BURROW_MODEL.")
    if isinstance(exc, openai.InternalServerError):
        return LLMError("server", f"The model server failed ({exc.status_code}). Retry in a moment.")
    if isinstance(exc, openai.APIStatusError):
        return LLMError("bad_request", f"The model server refused the request ({exc.status_code}): {exc.message}")
    return LLMError("unknown", f"The model call failed: {exc}")


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[header]) * scale
        except (KeyError, ValueError):
            continue
    return None


def build_model(settings: Settings) -> ChatModel:
    """The offline model without a key or base URL, otherwise an OpenAI-compatible client."""
    if settings.offline:
        log.info("No OPENAI_API_KEY or OPENAI_BASE_URL: using the offline demo model")
        return OfflineModel()
    return OpenAIChatModel(settings)
