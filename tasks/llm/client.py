"""The one LLM client: provider choice, retries, deadlines, structured output, accounting, budgets,
recording. Providers (tasks/llm/providers/, tasks/llm/local.py) each make one attempt; everything
shared lives here."""
from __future__ import annotations

import copy
import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import jsonschema
import tenacity

from .base import BudgetExceeded, LLMError, Provider, ProviderReply, TransientLLMError
from .providers import choose_provider_name, make_provider
from .providers.replay import call_parameters, cassette_entry

DEFAULT_TIMEOUT_S = 180.0      # per attempt; the local model on 2 cores needs the headroom
DEFAULT_MAX_ATTEMPTS = 4
BACKOFF_INITIAL_S = 1.0        # exponential backoff with jitter when the server names no wait
BACKOFF_MAX_S = 30.0
BACKOFF_JITTER_S = 1.0
MAX_RETRY_AFTER_S = 300.0      # a longer Retry-After is capped (and then usually stopped by the deadline)
FREE_PROVIDERS = frozenset({"local", "scripted", "replay"})
PRICES_PATH = Path(__file__).with_name("prices.json")
REPAIR_TEMPLATE = Path(__file__).with_name("repair_prompt.txt").read_text(encoding="utf-8")
REPO_ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger("tasks.llm")
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
CALL_SEED_STRIDE = 100_003  # call n of a run with seed s samples with seed s*stride+n
_USAGE_FIELDS = ("calls", "tokens_in", "tokens_out", "cost_usd", "latency_s", "retries")


@dataclass
class LLMReply:
    text: str
    data: Any                 # the validated JSON value when a schema was given, else None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float
    truncated: bool           # the model hit max_tokens: never apply a truncated answer
    model: str
    provider: str
    role: str

    def to_dict(self) -> dict:
        return asdict(self)


def load_dotenv_files() -> None:
    """.env from the working directory and the repository root; real environment variables win."""
    from dotenv import load_dotenv
    for path in (Path.cwd() / ".env", REPO_ROOT / ".env"):
        if path.is_file():
            load_dotenv(path, override=False)


def make_client(provider: str | None = None, model: str | None = None, *, record_to: str | os.PathLike | None = None,
                max_cost: float | None = None, max_calls: int | None = None, seed: int | None = None,
                timeout: float | None = None, deadline: float | None = None) -> "LLMClient":
    """A client for `provider` ("gemini", "openai", "local", "scripted:PATH", "replay:PATH"; default:
    LLM_PROVIDER, else whichever backend is configured). `deadline` is seconds from now after which
    no call or retry starts; `timeout` caps each attempt."""
    load_dotenv_files()
    spec = choose_provider_name(provider)
    if model is None and spec.split(":", 1)[0] not in ("scripted", "replay"):
        model = os.environ.get("LLM_MODEL") or None
    timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
    backend = make_provider(spec, model, timeout=timeout)
    return LLMClient(backend, record_to=record_to, max_cost=max_cost, max_calls=max_calls, seed=seed,
                     timeout=timeout, deadline=deadline)


class LLMClient:
    def __init__(self, provider: Provider, *, record_to: str | os.PathLike | None = None,
                 max_cost: float | None = None, max_calls: int | None = None, seed: int | None = None,
                 timeout: float | None = None, deadline: float | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, sleep: Callable[[float], None] = time.sleep,
                 prices_path: str | os.PathLike = PRICES_PATH):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.provider = provider
        self.record_to = Path(record_to) if record_to else None
        self.max_cost = max_cost
        self.max_calls = max_calls
        self.seed = seed
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
        self._deadline_at = None if deadline is None else time.monotonic() + float(deadline)
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._prices = _load_prices(Path(prices_path))
        self._warned_unpriced: set[str] = set()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._usage = _empty_usage()
        self._usage["by_role"] = {}

    # ---- public API ------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"{self.provider.name}:{self.provider.model}"

    def complete(self, role: str, prompt: str, *, schema: dict | None = None, system: str | None = None,
                 max_tokens: int = 1024, temperature: float = 0.7) -> LLMReply:
        _check_arguments(role, prompt, schema, system, max_tokens, temperature)
        validator = jsonschema.Draft202012Validator(schema) if schema is not None else None
        first, first_latency, first_cost = self._call(role, prompt, system, max_tokens, temperature, schema)
        calls = [(first, first_latency, first_cost)]
        final, data = first, None
        if validator is not None:
            data, problem = _parse_and_validate(first.text, validator)
            if problem and first.finish_reason != "length":
                repair_prompt = REPAIR_TEMPLATE.format(prompt=prompt, reply=first.text, problem=problem)
                final, latency, cost = self._call(role, repair_prompt, system, max_tokens, temperature, schema)
                calls.append((final, latency, cost))
                data, problem = _parse_and_validate(final.text, validator)
                if problem and final.finish_reason != "length":
                    raise LLMError(f"role {role!r}: the reply is not valid JSON for the schema even after one "
                                   f"repair call: {problem}")
        return LLMReply(text=final.text, data=data,
                        tokens_in=sum(r.tokens_in for r, _, _ in calls),
                        tokens_out=sum(r.tokens_out for r, _, _ in calls),
                        cost_usd=sum(c for _, _, c in calls), latency_s=sum(t for _, t, _ in calls),
                        truncated=final.finish_reason == "length", model=final.model,
                        provider=self.provider.name, role=role)

    def usage(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._usage)

    def check_budget(self) -> None:
        """Raise BudgetExceeded if no further call may start (max_calls, max_cost, deadline)."""
        with self._lock:
            self._check_budget_locked()

    def state_dict(self) -> dict:
        state_of = getattr(self.provider, "state_dict", None)
        return {"version": 1, "describe": self.describe(), "usage": self.usage(),
                "provider_state": state_of() if state_of else None}

    def load_state_dict(self, state: dict) -> None:
        if state.get("describe") not in (None, self.describe()):
            log.warning("resuming LLM state recorded with %s on %s", state.get("describe"), self.describe())
        usage = _empty_usage()
        usage.update({k: v for k, v in state.get("usage", {}).items() if k in _USAGE_FIELDS})
        usage["by_role"] = {role: {**_empty_usage(), **counts}
                            for role, counts in state.get("usage", {}).get("by_role", {}).items()}
        with self._lock:
            self._usage = usage
        load = getattr(self.provider, "load_state_dict", None)
        if load and state.get("provider_state") is not None:
            load(state["provider_state"])

    # ---- one call with retries, accounting and recording ------------------------------------------
    def _call(self, role, prompt, system, max_tokens, temperature, schema) -> tuple[ProviderReply, float, float]:
        with self._lock:
            self._check_budget_locked()
            self._in_flight += 1
            seed = self._call_seed()
        try:
            started = time.monotonic()
            reply = self._generate_with_retries(role, prompt, system, max_tokens, temperature, schema, seed)
            latency = time.monotonic() - started
        finally:
            with self._lock:
                self._in_flight -= 1
        cost = self._cost_of(reply)
        self._account(role, reply, latency, cost)
        if self.record_to is not None:
            self._record(role, prompt, reply, latency, call_parameters(system, max_tokens, temperature,
                                                                        seed, schema))
        return reply, latency, cost

    def _call_seed(self) -> int | None:
        """A different, reproducible seed for every call of a run: with one fixed seed, a local model asked a
        similar prompt twice samples the same answer twice (seen: repeated "unchanged" candidates)."""
        if self.seed is None:
            return None
        return (self.seed * CALL_SEED_STRIDE + self._usage["calls"]) % 2**31

    def _generate_with_retries(self, role, prompt, system, max_tokens, temperature, schema,
                               seed: int | None = None) -> ProviderReply:
        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(TransientLLMError),
                                     wait=self._wait, stop=self._stop, sleep=self._sleep, reraise=True,
                                     before_sleep=lambda state: self._count_retry(role, state))
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    return self.provider.generate(prompt, role=role, system=system, max_tokens=max_tokens,
                                                  temperature=temperature, seed=seed, schema=schema,
                                                  timeout=self._attempt_timeout())
        except TransientLLMError as exc:
            raise LLMError(f"{self.describe()} call for role {role!r} failed after {attempts} attempt(s), "
                           f"the last: {exc}") from exc
        raise AssertionError("tenacity ended without a result")  # unreachable: reraise=True

    def _attempt_timeout(self) -> float:
        if self._deadline_at is None:
            return self.timeout
        remaining = self._deadline_at - time.monotonic()
        if remaining <= 0:
            raise BudgetExceeded("the run's deadline has passed; no further LLM call starts")
        return min(self.timeout, remaining)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), MAX_RETRY_AFTER_S)
        return tenacity.wait_exponential_jitter(initial=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S,
                                                jitter=BACKOFF_JITTER_S)(state)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.max_attempts:
            return True
        # no retry starts past the deadline (upcoming_sleep is computed before stop is asked)
        return self._deadline_at is not None and time.monotonic() + state.upcoming_sleep >= self._deadline_at

    # ---- budgets and accounting -------------------------------------------------------------------
    def _check_budget_locked(self) -> None:
        calls = self._usage["calls"] + self._in_flight
        if self.max_calls is not None and calls >= self.max_calls:
            raise BudgetExceeded(f"the run's call budget is used up ({calls} of max_calls={self.max_calls})")
        if self.max_cost is not None and self._usage["cost_usd"] >= self.max_cost:
            raise BudgetExceeded(f"the run's cost budget is used up (${self._usage['cost_usd']:.4f} of "
                                 f"max_cost=${self.max_cost})")
        if self._deadline_at is not None and time.monotonic() >= self._deadline_at:
            raise BudgetExceeded("the run's deadline has passed; no further LLM call starts")

    def _count_retry(self, role: str, state: tenacity.RetryCallState) -> None:
        log.warning("%s role %r: attempt %d failed (%s); retrying in %.1f s", self.describe(), role,
                    state.attempt_number, state.outcome.exception() if state.outcome else "?", state.upcoming_sleep)
        with self._lock:
            self._usage["retries"] += 1
            self._usage["by_role"].setdefault(role, _empty_usage())["retries"] += 1

    def _account(self, role: str, reply: ProviderReply, latency: float, cost: float) -> None:
        with self._lock:
            for bucket in (self._usage, self._usage["by_role"].setdefault(role, _empty_usage())):
                bucket["calls"] += 1
                bucket["tokens_in"] += reply.tokens_in
                bucket["tokens_out"] += reply.tokens_out
                bucket["cost_usd"] += cost
                bucket["latency_s"] += latency

    def _cost_of(self, reply: ProviderReply) -> float:
        if self.provider.name in FREE_PROVIDERS:
            return 0.0
        price = _price_for(self._prices, reply.model) or _price_for(self._prices, self.provider.model)
        if price is None:
            if self.provider.model not in self._warned_unpriced:
                self._warned_unpriced.add(self.provider.model)
                log.warning("no price for model %r in %s: its calls count as $0 and --max-cost cannot "
                            "limit them; add the model there", self.provider.model, PRICES_PATH.name)
            return 0.0
        return (reply.tokens_in * price["input"] + reply.tokens_out * price["output"]) / 1e6

    def _record(self, role, prompt, reply, latency, parameters) -> None:
        entry = cassette_entry(role=role, provider=self.provider.name, model=self.provider.model,
                               parameters=parameters, prompt=prompt, reply=reply, latency_s=latency)
        self.record_to.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.record_to, "a", encoding="utf-8") as cassette:
            cassette.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _empty_usage() -> dict:
    return {"calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "latency_s": 0.0, "retries": 0}


def _load_prices(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError) as exc:
        raise LLMError(f"cannot read model prices from {path}: {exc}; it needs a \"models\" object") from exc


def _price_for(prices: dict, model: str) -> dict | None:
    name = model.removeprefix("models/")
    matches = [key for key in prices if name == key or name.startswith(key)]
    return prices[max(matches, key=len)] if matches else None


def _parse_and_validate(text: str, validator: jsonschema.protocols.Validator) -> tuple[Any, str | None]:
    """(value, None) when the text is JSON satisfying the schema, else (None, what is wrong)."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text.strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc})"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        return None, f"does not match the schema at {where}: {error.message}"
    return value, None


def _check_arguments(role, prompt, schema, system, max_tokens, temperature) -> None:
    if not isinstance(role, str) or not role:
        raise ValueError(f"role must be a non-empty string, got {role!r}")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    if system is not None and not isinstance(system, str):
        raise ValueError(f"system must be a string or None, got {type(system).__name__}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be a number from 0 to 2, got {temperature!r}")
    if schema is not None:
        if not isinstance(schema, dict):
            raise ValueError(f"schema must be a JSON schema dict or None, got {type(schema).__name__}")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            raise ValueError(f"schema is not a valid JSON schema: {exc.message}") from exc
