"""Code agents: mini-HyperAgents. Each is {solution code, propose() source}.

`propose(context)` is untrusted code (the mutator rewrites it), so it runs in the Sandbox and reaches the
model only through the LLM broker, role "code_agent". It returns the model's reply; the trusted side turns
the reply into candidate code with run.propose() and scores it. A mutated propose() is used only after the
three-stage check of tasks/agent_validation.py (compile, sandboxed import, signature); otherwise the
child keeps its parent's propose() (the mutation is reverted) and the reason is recorded.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from tasks.agent_validation import validate_agent
from tasks.code_edits import CandidateRejected, candidate_from_reply
from tasks.harness import sibling
from tasks.llm import BudgetExceeded, LLMError
from tasks.llm.broker import make_llm_host_function
from tasks.sandbox import Limits, Sandbox, SandboxError

llm = sibling(__file__, "llm")
agent_state = sibling(__file__, "agent_state")

PROPOSE_FILE = "propose_agent.py"
PROPOSE_REQUIRED = {PROPOSE_FILE: {"propose": ["context"]}}
DEFAULT_PROPOSE = (Path(__file__).resolve().parent / "default_propose.py").read_text(encoding="utf-8")
# propose() only builds a prompt: its own CPU is small; the wall clock must cover model calls (host time is
# excluded per call, but the session deadline counts it), so total_timeout is generous.
PROPOSE_LIMITS = Limits(load_timeout=10.0, call_timeout=20.0, total_timeout=1800.0, cpu_seconds=30, memory_mb=512)
MAX_REPLY_CHARS = 60_000


@dataclass
class CodeAgent(agent_state.AgentState):
    id: str
    code: str
    propose_source: str
    born: int = 0
    parent: str | None = None
    score: float | None = None          # arena score on the suite as of its last evaluation
    original_score: float | None = None  # the task metric on the task's own cases (comparable across levels)
    feedback: str = ""                   # how the current code does on the suite, for the next prompt
    last_error: str = ""                 # why the last attempt was not kept
    history: list = field(default_factory=list)



def build_context(agent: CodeAgent, task, round_index: int, edit_format: str) -> dict:
    """What propose() sees: plain JSON data, nothing from the trusted side's objects."""
    return {"task_prompt": task.build_prompt(agent.code, agent.score), "code": agent.code, "score": agent.score,
            "feedback": agent.feedback, "last_error": agent.last_error, "edit_format": edit_format,
            "round": round_index}


def run_propose(agent: CodeAgent, context: dict, client) -> SimpleNamespace:
    """Run the agent's propose() in the sandbox. Returns a reply-like object (.text, .truncated) or raises
    CandidateRejected("no_code", why) when propose() failed or returned something unusable."""
    host = {"llm": make_llm_host_function(client, {"code_agent"})}
    with tempfile.TemporaryDirectory(prefix="arena-propose-") as folder:
        path = Path(folder) / PROPOSE_FILE
        path.write_text(agent.propose_source, encoding="utf-8")
        try:
            with Sandbox(path, limits=PROPOSE_LIMITS, host_functions=host) as box:
                box.require("propose")
                value = box.call("propose", context)
        except SandboxError as error:
            raise CandidateRejected("no_code", f"propose() failed: {error.status}: {error.message[:300]}") from None
        finally:
            client.check_budget()  # a budget refusal inside the sandbox stops the run cleanly here
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        text, truncated = value["text"], bool(value.get("truncated", False))
    elif isinstance(value, str):
        text, truncated = value, False
    else:
        raise CandidateRejected("no_code", f"propose() must return the reply text (a str) or "
                                           f"{{'text': str, 'truncated': bool}}, got {type(value).__name__}")
    if len(text) > MAX_REPLY_CHARS:
        raise CandidateRejected("too_large", f"propose() returned {len(text)} characters; the limit is "
                                             f"{MAX_REPLY_CHARS}")
    return SimpleNamespace(text=text, truncated=truncated)


def mutated_copy(parent: CodeAgent, new_id: str, round_index: int, client) -> tuple[CodeAgent, dict]:
    """A copy of `parent` whose propose() the mutator rewrote, or the parent's own when the rewrite fails a check."""
    recent = [entry for entry in parent.history[-5:]]
    kept = sum(1 for entry in recent if entry.get("kept"))
    stats = f"{kept} of its last {len(recent)} proposals were kept; score {parent.score}"
    record = {"child": new_id, "parent": parent.id, "kind": "propose", "round": round_index}
    source, reason = parent.propose_source, ""
    try:
        reply = client.complete("mutator", llm.mutate_propose_prompt(parent.propose_source, stats),
                                max_tokens=llm.MUTATOR_MAX_TOKENS, temperature=llm.MUTATOR_TEMPERATURE)
        candidate = candidate_from_reply(reply.text, parent.propose_source, truncated=reply.truncated,
                                         required_names=["propose"])
        verdict = validate_agent({PROPOSE_FILE: candidate}, PROPOSE_REQUIRED)
        if verdict.ok:
            source = candidate
        else:
            reason = f"{verdict.stage}: {verdict.reason}"
    except CandidateRejected as rejected:
        reason = f"{rejected.kind}: {rejected.message}"
    except BudgetExceeded:
        raise
    except LLMError as error:
        reason = f"mutator call failed: {error}"
    record.update(outcome="mutated" if not reason else "reverted", reason=reason[:300])
    child = CodeAgent(id=new_id, code=parent.code, propose_source=source, born=round_index, parent=parent.id,
                      score=parent.score, original_score=parent.original_score, feedback=parent.feedback)
    return child, record
