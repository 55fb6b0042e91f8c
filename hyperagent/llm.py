"""Level 3's LLM access: the broker host function each sandboxed agent gets, and nothing else.

The agents run in the sandbox and reach a model only through `sandbox_host.call("llm", role, prompt, ...)`,
which runs the broker (tasks/llm/broker.py) here in the trusted parent on the run's own client: every call is
counted in the run's usage and stopped by --max-calls/--max-cost. On top of that, one agent step may make only
a few calls, so a rewritten agent that loops on the model cannot spend the whole budget in one step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.llm import BudgetExceeded, LLMClient
from tasks.llm.broker import BrokerRefusal, make_llm_host_function

TASK_AGENT_ROLE = "task_agent"
META_AGENT_ROLE = "meta_agent"
CALLS_PER_STEP = 3          # LLM calls one propose() or rewrite() may make


@dataclass
class BrokerSession:
    """The host function for one sandboxed agent step, and what happened through it."""
    client: LLMClient
    role: str
    calls: int = 0
    budget_refused: str = ""                             # set when the run's budget stopped a call
    replies: list[dict] = field(default_factory=list)    # what the model answered, for truncation checks

    def host_functions(self) -> dict:
        broker = make_llm_host_function(self.client, {self.role})

        def llm(*args):
            if self.calls >= CALLS_PER_STEP:
                raise BrokerRefusal(f"llm(): one agent step may make at most {CALLS_PER_STEP} calls")
            self.calls += 1
            try:
                reply = broker(*args)
            except BudgetExceeded as stop:
                self.budget_refused = str(stop)
                raise
            self.replies.append(reply)
            return reply

        return {"llm": llm}

    def stop_if_budget_refused(self) -> None:
        """Raise BudgetExceeded when the run's budget refused a call of this step: the harness then stops cleanly
        instead of recording a failure the agent could not help."""
        if self.budget_refused:
            raise BudgetExceeded(self.budget_refused)

    def was_truncated(self, text: str) -> bool:
        """True when the agent returned, as is, a reply the model cut off at its token limit."""
        return any(reply["truncated"] and reply["text"] == text for reply in self.replies)
