"""What code agents and test agents share: complete (de)serialization, so a run resumes mid-round, and a
bounded history of their rounds."""
from __future__ import annotations

from dataclasses import asdict

HISTORY_KEPT = 20  # per-agent round records kept in the state


class AgentState:
    """Mixin for the agents' dataclasses (each has a `history` list field)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def remember(self, entry: dict) -> None:
        self.history = (self.history + [entry])[-HISTORY_KEPT:]
