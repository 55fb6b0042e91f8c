"""The LLM broker: the one way sandboxed agent code (levels 3 and 4) reaches a model.

    box = Sandbox(path, host_functions={"llm": make_llm_host_function(client, {"worker", "tester"})})
    # inside the sandbox:  sandbox_host.call("llm", "worker", prompt)  ->  {"text", "truncated", "data"}

Calls go through the run's own client, so they are counted in its usage and stopped by its budget
(a refusal reaches the contained code as sandbox_host.HostError; the loop should call
client.check_budget() after the sandboxed step to stop cleanly). The contained code gets plain data
only: never the client, a provider, or a key.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

from .base import LLMError
from .client import LLMClient

MAX_PROMPT_CHARS = 40_000
MAX_SCHEMA_CHARS = 10_000
MAX_TOKENS_CAP = 4096
DEFAULT_MAX_TOKENS = 1024
SECRET_ENV_VARS = ("GEMINI_API_KEY", "OPENAI_API_KEY")


class BrokerRefusal(ValueError):
    """The contained code asked for something the broker does not allow."""


def make_llm_host_function(client: LLMClient, allowed_roles: Iterable[str], *,
                           max_prompt_chars: int = MAX_PROMPT_CHARS,
                           max_tokens_cap: int = MAX_TOKENS_CAP) -> Callable[..., dict]:
    roles = frozenset(allowed_roles)
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise ValueError(f"allowed_roles must be non-empty strings, got {sorted(map(repr, roles))}")
    complete = client.complete  # the closure keeps only this bound method, never exposed to callers

    def llm(role: Any, prompt: Any, schema: Any = None, max_tokens: Any = None) -> dict:
        _refuse_bad_arguments(role, prompt, schema, max_tokens, roles, max_prompt_chars, max_tokens_cap)
        try:
            reply = complete(role, prompt, schema=schema,
                             max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens)
        except LLMError as exc:
            raise type(exc)(_redact(str(exc))) from None
        except ValueError as exc:  # the client's own argument checks, e.g. an invalid schema
            raise BrokerRefusal(_redact(str(exc))) from None
        return {"text": str(reply.text), "truncated": bool(reply.truncated), "data": reply.data}

    llm.__name__ = "llm"
    return llm


def _refuse_bad_arguments(role, prompt, schema, max_tokens, roles, max_prompt_chars, max_tokens_cap) -> None:
    if type(role) is not str or role not in roles:
        raise BrokerRefusal(f"llm(): role must be one of {sorted(roles)}, got {_short(role)}")
    if type(prompt) is not str:
        raise BrokerRefusal(f"llm(): prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise BrokerRefusal("llm(): prompt is empty")
    if len(prompt) > max_prompt_chars:
        raise BrokerRefusal(f"llm(): prompt is {len(prompt)} characters, the limit is {max_prompt_chars}; "
                            "shorten it")
    if schema is not None:
        if type(schema) is not dict:
            raise BrokerRefusal(f"llm(): schema must be a JSON schema object or None, got {type(schema).__name__}")
        try:
            size = len(json.dumps(schema, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise BrokerRefusal(f"llm(): schema is not plain JSON data ({exc})") from None
        if size > MAX_SCHEMA_CHARS:
            raise BrokerRefusal(f"llm(): schema is {size} characters as JSON, the limit is {MAX_SCHEMA_CHARS}")
    if max_tokens is not None and (type(max_tokens) is not int or not 1 <= max_tokens <= max_tokens_cap):
        raise BrokerRefusal(f"llm(): max_tokens must be an integer from 1 to {max_tokens_cap}, got {_short(max_tokens)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _redact(message: str) -> str:
    """Error text goes to untrusted code: make sure no key travels with it."""
    for name in SECRET_ENV_VARS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:
            message = message.replace(secret, "[redacted]")
    return message
