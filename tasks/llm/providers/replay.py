"""Record/replay cassettes: the JSONL format the client appends to (record_to=PATH) and the provider
that serves a recorded run back (replay:PATH)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..base import LLMError, ProviderReply
from .scripted import _parse_line, _read_lines

PROMPT_PREVIEW_CHARS = 120


def cassette_key(role: str, model: str, parameters: dict, prompt: str) -> str:
    canonical = json.dumps({"role": role, "model": model, "parameters": parameters, "prompt": prompt},
                           sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cassette_entry(*, role: str, provider: str, model: str, parameters: dict, prompt: str,
                   reply: ProviderReply, latency_s: float) -> dict:
    return {"role": role, "provider": provider, "model": model, "parameters": parameters, "prompt": prompt,
            "response": reply.text, "finish_reason": reply.finish_reason, "reply_model": reply.model,
            "usage": {"tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out},
            "latency_s": round(latency_s, 4)}


class ReplayProvider:
    """Serves recorded replies by (role, model, parameters, prompt); repeats of one key in recorded order."""

    name = "replay"

    def __init__(self, path: str | Path, model: str | None = None):
        self.path = Path(path)
        self._served: dict[str, list[dict]] = {}
        models: list[str] = []
        for line_number, line in enumerate(_read_lines(self.path, "cassette"), start=1):
            if not line.strip():
                continue
            entry = _parse_line(line, self.path, line_number)
            missing = {"role", "model", "parameters", "prompt", "response"} - set(entry)
            if missing:
                raise LLMError(f"{self.path}:{line_number}: not a cassette line, missing {sorted(missing)}")
            key = cassette_key(entry["role"], entry["model"], entry["parameters"], entry["prompt"])
            self._served.setdefault(key, []).append(entry)
            if entry["model"] not in models:
                models.append(entry["model"])
        # the recorded model unless told otherwise, so `replay:PATH` alone reproduces the run
        self.model = model or (models[0] if models else "unknown")
        self.recorded_provider = next(iter(self._served.values()))[0]["provider"] if self._served else "none"
        self._cursor: dict[str, int] = {}

    def generate(self, prompt: str, *, role: str, system: str | None, max_tokens: int,
                 temperature: float, seed: int | None, schema: dict | None,
                 timeout: float) -> ProviderReply:
        parameters = call_parameters(system, max_tokens, temperature, seed, schema)
        key = cassette_key(role, self.model, parameters, prompt)
        entries = self._served.get(key, [])
        position = self._cursor.get(key, 0)
        if position >= len(entries):
            preview = prompt[:PROMPT_PREVIEW_CHARS].replace("\n", "\\n")
            seen = f"recorded {len(entries)} time(s), asked again" if entries else "never recorded"
            raise LLMError(f"replay {self.path}: no recorded reply for role {role!r}, prompt starting "
                           f"{preview!r} ({seen}); this run differs from the recording (prompt, model or "
                           f"parameters changed), so record it again")
        entry = entries[position]
        self._cursor[key] = position + 1
        usage = entry.get("usage", {})
        return ProviderReply(text=entry["response"], tokens_in=int(usage.get("tokens_in", 0)),
                             tokens_out=int(usage.get("tokens_out", 0)),
                             finish_reason=entry.get("finish_reason", "stop"), model=self.model)

    def state_dict(self) -> dict:
        return {"cursor": dict(self._cursor)}

    def load_state_dict(self, state: dict) -> None:
        self._cursor.update({key: int(n) for key, n in state.get("cursor", {}).items()})


def call_parameters(system: str | None, max_tokens: int, temperature: float, seed: int | None,
                    schema: dict | None) -> dict:
    """The parameters that make two calls the same call (part of the cassette key)."""
    return {"system": system, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
            "schema": schema}
