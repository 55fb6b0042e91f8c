"""Test agents: trusted, prompt-driven. Each is a `focus` (one sentence of strategy) plus its score record.

Why not sandboxed code like the code agents: a test agent's product is data (cases), and every case is
checked on the trusted side anyway (schema, dedup, referee), so running agent-written code would add an
attack surface and buy nothing a prompt cannot express for a small model. Mutation is therefore a prompt
mutation: the mutator rewrites the focus sentence of the best test agent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tasks.harness import sibling
from tasks.llm import BudgetExceeded, LLMError

llm = sibling(__file__, "llm")
agent_state = sibling(__file__, "agent_state")

# Starting foci, handed out in turn; written for any task (the specification supplies the specifics).
INITIAL_FOCI = (
    "boundary values: the smallest and largest sizes and limits the specification allows, and one past them",
    "a branch of the code that does not follow the specification exactly",
    "unusual but allowed inputs the code may not expect",
    "two rules of the specification that interact in one input",
)


@dataclass
class TestAgent(agent_state.AgentState):
    __test__ = False  # not a pytest test class, whatever its name

    id: str
    focus: str
    born: int = 0
    parent: str | None = None
    history: list = field(default_factory=list)   # per round: {"round", "score", "proposed", "accepted", ...}
    error: str = ""                                # the last proposal's failure, shown in no prompt (a record)


    def recent_score(self, rounds: int) -> float:
        return sum(entry["score"] for entry in self.history[-rounds:])

    def total_score(self) -> float:
        return sum(entry["score"] for entry in self.history)


def initial_agents(count: int) -> list[TestAgent]:
    return [TestAgent(id=f"t{number + 1}", focus=INITIAL_FOCI[number % len(INITIAL_FOCI)]) for number in range(count)]


def propose_cases(agent: TestAgent, client, prompt: str, schema: dict) -> tuple[list, str]:
    """(cases, "") or ([], why) when the model's answer was unusable. Cases are unchecked data here."""
    try:
        reply = client.complete("test_agent", prompt, schema=schema, max_tokens=llm.TEST_AGENT_MAX_TOKENS,
                                temperature=llm.TEST_AGENT_TEMPERATURE)
    except BudgetExceeded:
        raise
    except LLMError as error:
        return [], f"test_agent call failed: {str(error)[:300]}"
    if reply.truncated or not isinstance(reply.data, dict):
        return [], "the reply was cut off at the token limit" if reply.truncated else "the reply was not JSON"
    cases = reply.data.get("cases")
    return (cases, "") if isinstance(cases, list) else ([], 'the reply had no "cases" list')


def mutated_copy(parent: TestAgent, new_id: str, round_index: int, client, spec: str,
                 window: int) -> tuple[TestAgent, dict]:
    recent = parent.history[-window:]
    stats = (f"in its last {len(recent)} rounds: {sum(e.get('breaking', 0) for e in recent)} cases that broke "
             f"code, {sum(e.get('rejected', 0) for e in recent)} rejected")
    record = {"child": new_id, "parent": parent.id, "kind": "focus", "round": round_index}
    focus, reason = parent.focus, ""
    try:
        reply = client.complete("mutator", llm.mutate_focus_prompt(spec, parent.focus, stats),
                                schema=llm.FOCUS_SCHEMA, max_tokens=200, temperature=llm.MUTATOR_TEMPERATURE)
        proposed = reply.data.get("focus", "").strip() if isinstance(reply.data, dict) else ""
        if reply.truncated or not proposed:
            reason = "the mutator's reply was cut off or empty"
        else:
            focus = proposed[:llm.MAX_FOCUS_CHARS]
    except BudgetExceeded:
        raise
    except LLMError as error:
        reason = f"mutator call failed: {str(error)[:300]}"
    record.update(outcome="mutated" if not reason else "reverted", reason=reason, focus=focus)
    return TestAgent(id=new_id, focus=focus, born=round_index, parent=parent.id), record
