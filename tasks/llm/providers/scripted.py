"""Canned replies from a JSONL file, served per role in file order whatever the prompt (for tests and demos)."""
from __future__ import annotations

import json
from pathlib import Path

from ..base import LLMError, ProviderReply


class ScriptedProvider:
    """Each line: {"role": "worker", "response": "...", optional "finish_reason", "tokens_in", "tokens_out"}."""

    name = "scripted"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.model = self.path.name
        self._replies: dict[str, list[dict]] = {}
        for line_number, line in enumerate(_read_lines(self.path, "script"), start=1):
            if not line.strip():
                continue
            entry = _parse_line(line, self.path, line_number)
            if not isinstance(entry.get("role"), str) or not isinstance(entry.get("response"), str):
                raise LLMError(f"{self.path}:{line_number}: each script line needs a string \"role\" and a "
                               f"string \"response\", got {sorted(entry)}")
            self._replies.setdefault(entry["role"], []).append(entry)
        self._cursor: dict[str, int] = {role: 0 for role in self._replies}

    def generate(self, prompt: str, *, role: str, system: str | None, max_tokens: int,
                 temperature: float, seed: int | None, schema: dict | None,
                 timeout: float) -> ProviderReply:
        replies = self._replies.get(role, [])
        position = self._cursor.get(role, 0)
        if position >= len(replies):
            raise LLMError(f"scripted provider {self.path}: the script for role {role!r} is exhausted after "
                           f"{len(replies)} replies; add more lines with \"role\": \"{role}\" or make fewer calls")
        entry = replies[position]
        self._cursor[role] = position + 1
        text = entry["response"]
        return ProviderReply(text=text,
                             tokens_in=int(entry.get("tokens_in", len(prompt) // 4)),
                             tokens_out=int(entry.get("tokens_out", len(text) // 4)),
                             finish_reason=entry.get("finish_reason", "stop"), model=self.model)

    def state_dict(self) -> dict:
        return {"cursor": dict(self._cursor)}

    def load_state_dict(self, state: dict) -> None:
        self._cursor.update({role: int(n) for role, n in state.get("cursor", {}).items()})


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LLMError(f"cannot read the {what} file {path}: {exc}") from exc


def _parse_line(line: str, path: Path, line_number: int) -> dict:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LLMError(f"{path}:{line_number}: not a JSON line ({exc})") from exc
    if not isinstance(entry, dict):
        raise LLMError(f"{path}:{line_number}: each line must be a JSON object")
    return entry
