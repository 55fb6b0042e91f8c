"""The one LLM client. See client.py for make_client and README.md for providers and env vars."""
from .base import BudgetExceeded, LLMError, Provider, ProviderReply, TransientLLMError
from .client import LLMClient, LLMReply, make_client

__all__ = ["make_client", "LLMClient", "LLMReply", "LLMError", "BudgetExceeded", "TransientLLMError",
           "Provider", "ProviderReply"]
