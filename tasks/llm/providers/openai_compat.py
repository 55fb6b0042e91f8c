"""OpenAI and OpenAI-compatible servers (Ollama, vLLM, LM Studio, llama_cpp.server) via the openai SDK."""
from __future__ import annotations

import os

from ..base import LLMError, ProviderReply, TransientLLMError
from .http_common import (TRANSPORT_ERRORS, call_with_wall_clock, parse_retry_after, schema_instruction,
                          status_error)

DEFAULT_MODEL = "gpt-4o-mini"
# Local servers ignore the key but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed-for-local-servers"
KEY_HINT = "set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server such as Ollama"
CHARS_PER_TOKEN_ESTIMATE = 4  # for servers that report no usage

# How structured output is asked for, best first; a server that rejects one mode gets the next.
SCHEMA_MODES = ("json_schema", "json_object", "prompt_only")


class OpenAIProvider:
    name = "openai"

    def __init__(self, model: str | None = None, *, api_key: str | None = None,
                 base_url: str | None = None, timeout: float = 120.0):
        import openai

        self._openai = openai
        self.model = model or DEFAULT_MODEL
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if not base_url:
                raise LLMError(f"the openai provider needs a key or a server: {KEY_HINT}")
            api_key = PLACEHOLDER_KEY
        self.base_url = base_url
        # max_retries=0: the client's tenacity loop does the retrying (SDK default: 2 retries, 600 s).
        self._sdk = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
        # remembered per client: what this server accepted
        self._schema_mode = SCHEMA_MODES[0]
        self._token_param = "max_tokens"

    def generate(self, prompt: str, *, role: str, system: str | None, max_tokens: int,
                 temperature: float, seed: int | None, schema: dict | None,
                 timeout: float) -> ProviderReply:
        while True:
            try:
                return self._generate_once(prompt, system, max_tokens, temperature, seed, schema, timeout)
            except _Rejected as rejection:
                if not self._fall_back(rejection, schema):
                    raise rejection.error from None

    def _generate_once(self, prompt, system, max_tokens, temperature, seed, schema, timeout) -> ProviderReply:
        system_text = system or ""
        kwargs: dict = {self._token_param: max_tokens, "temperature": temperature}
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            if self._schema_mode == "json_schema":
                kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "reply", "schema": schema, "strict": False}}
            else:
                if self._schema_mode == "json_object":
                    kwargs["response_format"] = {"type": "json_object"}
                system_text = (system_text + "\n\n" + schema_instruction(schema)).strip()
        messages = ([{"role": "system", "content": system_text}] if system_text else [])
        messages.append({"role": "user", "content": prompt})

        def request():
            return self._sdk.chat.completions.create(model=self.model, messages=messages, timeout=timeout, **kwargs)

        try:
            response = call_with_wall_clock(request, timeout, f"openai {self.model}")
        except LLMError:
            raise
        except self._openai.APIStatusError as exc:
            error = status_error("openai", exc.status_code, _body(exc), parse_retry_after(exc.response.headers),
                                 KEY_HINT)
            if exc.status_code in (400, 422):
                raise _Rejected(error, str(_body(exc))) from exc
            raise error from exc
        except (self._openai.APIConnectionError, *TRANSPORT_ERRORS) as exc:
            raise TransientLLMError(f"openai connection failed ({self.base_url or 'api.openai.com'}): {exc}") from exc
        except self._openai.OpenAIError as exc:
            raise LLMError(f"openai call failed: {type(exc).__name__}: {exc}") from exc
        return self._to_reply(response, messages)

    def _fall_back(self, rejection: "_Rejected", schema: dict | None) -> bool:
        """Adapt to a server that rejected a parameter; True if worth trying again."""
        body = rejection.body.lower()
        if self._token_param == "max_tokens" and "max_completion_tokens" in body:
            self._token_param = "max_completion_tokens"  # newer OpenAI models reject max_tokens
            return True
        if schema is not None and self._schema_mode != SCHEMA_MODES[-1] and (
                "response_format" in body or "json_schema" in body or "json_object" in body):
            self._schema_mode = SCHEMA_MODES[SCHEMA_MODES.index(self._schema_mode) + 1]
            return True
        return False

    def _to_reply(self, response, messages) -> ProviderReply:
        if not getattr(response, "choices", None):
            raise LLMError(f"openai-compatible server returned no choices: {str(response)[:300]}")
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage
        if usage is not None:
            tokens_in, tokens_out = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:
            tokens_in = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN_ESTIMATE
            tokens_out = len(text) // CHARS_PER_TOKEN_ESTIMATE
        finish = choice.finish_reason or "stop"
        return ProviderReply(text=text, tokens_in=tokens_in, tokens_out=tokens_out,
                             finish_reason="length" if finish == "length" else finish,
                             model=response.model or self.model)


class _Rejected(Exception):
    """A 400/422 that a different request shape might avoid."""

    def __init__(self, error: LLMError, body: str):
        super().__init__(str(error))
        self.error = error
        self.body = body


def _body(exc) -> object:
    return exc.body if exc.body is not None else getattr(exc, "message", str(exc))
