"""The contract every LLM provider implements, and the errors the client understands.

A provider does one thing: turn a prompt into a reply, once. Retries, budgets, accounting,
schema validation and recording live in the client (`tasks/llm/client.py`), so each provider stays small.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class ProviderReply:
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str  # "stop", or "length" when the model hit max_tokens (a truncated answer)
    model: str


class Provider(Protocol):
    name: str   # "gemini", "openai", "local", "scripted", "replay"
    model: str

    def generate(self, prompt: str, *, role: str, system: str | None, max_tokens: int,
                 temperature: float, seed: int | None, schema: dict | None,
                 timeout: float) -> ProviderReply:
        """One attempt, no retries. `schema` is a JSON schema the reply text must satisfy, when given;
        use the backend's native structured-output support for it."""
        ...


class LLMError(Exception):
    """A call failed for good; the message says what to do."""


class TransientLLMError(LLMError):
    """Worth retrying: 408, 409, 429, 5xx, connection errors, timeouts."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceeded(LLMError):
    """The run's --max-cost or --max-calls is reached; the loop checkpoints and stops cleanly."""
