"""What the HTTP providers (gemini, openai) share: a hard wall-clock cap per request, Retry-After
parsing, and the status codes worth retrying."""
from __future__ import annotations

import email.utils
import re
import threading
import time
from typing import Any, Callable

from ..base import LLMError, TransientLLMError

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
BODY_SNIPPET_CHARS = 300  # how much of an error body goes into our error message


def _transport_error_classes() -> tuple[type[BaseException], ...]:
    # The SDKs use httpx2 today; plain httpx is included in case either SDK switches back.
    classes: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        classes.append(module.TransportError)  # connect/read/write errors, timeouts, protocol errors
    return tuple(classes)


TRANSPORT_ERRORS = _transport_error_classes() + (ConnectionError, TimeoutError)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date) or retry-after-ms; None if absent."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_google_retry_delay(details: Any) -> float | None:
    """Gemini puts the wait in the error body (google.rpc.RetryInfo, e.g. "retryDelay": "31s")."""
    text = str(details)
    match = re.search(r"retryDelay'?\"?\s*:\s*'?\"?([0-9.]+)s", text)
    return float(match.group(1)) if match else None


def status_error(provider: str, status: int, body: Any, retry_after: float | None, hint: str = "") -> LLMError:
    """The error for an HTTP error status: transient (retried by the client) or final."""
    snippet = str(body)[:BODY_SNIPPET_CHARS]
    if status in RETRYABLE_STATUS:
        return TransientLLMError(f"{provider} answered HTTP {status}: {snippet}", retry_after=retry_after)
    advice = {
        400: "the request was rejected; check the model name and parameters",
        401: f"the API key was refused; {hint}",
        403: f"the API key has no access to this model; {hint}",
        404: "the model or endpoint does not exist; check LLM_MODEL and the base URL",
    }.get(status, "not retried")
    return LLMError(f"{provider} answered HTTP {status} ({advice}): {snippet}")


def call_with_wall_clock(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run fn with a hard wall-clock limit.

    The SDKs' timeouts bound each socket read, so a server that trickles a byte at a time never
    trips them; this cap does. On expiry the request thread is abandoned (it ends when the SDK's
    own read timeout or the server closes the connection) and a TransientLLMError is raised.
    """
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=run, name=f"llm-request-{what}", daemon=True)
    worker.start()
    if not finished.wait(timeout):
        raise TransientLLMError(f"{what} gave no complete answer within {timeout:.1f} s (timed out)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def schema_instruction(schema: dict) -> str:
    """Prompt text for backends without native structured output."""
    import json
    return ("Reply with a single JSON value only (no prose, no code fence) that satisfies this JSON schema:\n"
            + json.dumps(schema, sort_keys=True))
