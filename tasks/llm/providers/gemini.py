"""Gemini through the google-genai SDK (google-generativeai is deprecated and out of support)."""
from __future__ import annotations

import os

from ..base import LLMError, ProviderReply, TransientLLMError
from .http_common import (TRANSPORT_ERRORS, call_with_wall_clock, parse_google_retry_delay,
                          parse_retry_after, status_error)

DEFAULT_MODEL = "gemini-3.8-flash"
# Gemini 3 models think before answering and the thoughts count against max_output_tokens; a low
# level keeps short answers from being truncated by thinking. Gemini 2.x ignores this setting.
GEMINI3_THINKING_LEVEL = "LOW"
KEY_HINT = "set GEMINI_API_KEY (https://aistudio.google.com/apikey) in the environment or .env"

_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}


class GeminiProvider:
    name = "gemini"

    def __init__(self, model: str | None = None, *, api_key: str | None = None,
                 base_url: str | None = None, timeout: float = 120.0):
        from google import genai
        from google.genai import types

        self._types = types
        self.model = model or DEFAULT_MODEL
        api_key = api_key or os.environ.get("GEMINI_API_KEY")
        if not api_key:
            raise LLMError(f"the gemini provider needs an API key: {KEY_HINT}")
        base_url = base_url or os.environ.get("GEMINI_BASE_URL") or None
        # attempts=1: the SDK must not retry on its own; the client's tenacity loop does.
        http_options = types.HttpOptions(base_url=base_url, timeout=_millis(timeout),
                                         retry_options=types.HttpRetryOptions(attempts=1))
        self._sdk = genai.Client(api_key=api_key, http_options=http_options)

    def generate(self, prompt: str, *, role: str, system: str | None, max_tokens: int,
                 temperature: float, seed: int | None, schema: dict | None,
                 timeout: float) -> ProviderReply:
        types = self._types
        config = types.GenerateContentConfig(
            system_instruction=system or None,
            max_output_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            http_options=types.HttpOptions(timeout=_millis(timeout)),
        )
        if self.model.startswith("gemini-3"):
            config.thinking_config = types.ThinkingConfig(thinking_level=GEMINI3_THINKING_LEVEL)
        if schema is not None:
            config.response_mime_type = "application/json"
            config.response_json_schema = schema

        def request():
            return self._sdk.models.generate_content(model=self.model, contents=prompt, config=config)

        try:
            response = call_with_wall_clock(request, timeout, f"gemini {self.model}")
        except LLMError:
            raise
        except TRANSPORT_ERRORS as exc:
            raise TransientLLMError(f"gemini connection failed: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise _map_sdk_error(exc) from exc
        return _to_reply(response, self.model)


def _millis(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


def _map_sdk_error(exc: Exception) -> Exception:
    from google.genai import errors
    if isinstance(exc, errors.APIError):
        response = getattr(exc, "response", None)
        retry_after = parse_retry_after(getattr(response, "headers", None))
        if retry_after is None:
            retry_after = parse_google_retry_delay(exc.details)
        return status_error("gemini", int(exc.code or 0), exc.details, retry_after, KEY_HINT)
    return LLMError(f"gemini call failed: {type(exc).__name__}: {exc}")


def _to_reply(response, model: str) -> ProviderReply:
    candidates = response.candidates or []
    if not candidates:
        feedback = getattr(response, "prompt_feedback", None)
        raise LLMError(f"gemini returned no answer (prompt feedback: {feedback}); rephrase the prompt")
    candidate = candidates[0]
    parts = (candidate.content.parts if candidate.content else None) or []
    text = "".join(part.text for part in parts if part.text and not part.thought)
    reason = candidate.finish_reason
    reason_name = getattr(reason, "name", str(reason or "STOP"))
    usage = response.usage_metadata
    tokens_in = (usage.prompt_token_count or 0) if usage else 0
    # thinking tokens are billed as output
    tokens_out = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    return ProviderReply(text=text, tokens_in=tokens_in, tokens_out=tokens_out,
                         finish_reason=_FINISH_REASONS.get(reason_name, reason_name.lower()),
                         model=response.model_version or model)
