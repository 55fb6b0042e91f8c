"""The worker: a small prompt, one proposed change. It acts on the reviewer's latest feedback."""
from __future__ import annotations

from tasks.code_edits import CandidateRejected
from tasks.harness import Run, sibling

llm = sibling(__file__, "llm")


def propose_change(run: Run, feedback: dict | None, last_error: str) -> tuple[str | None, str]:
    """(candidate code, "") or (None, why the answer could not be used)."""
    prompt = llm.worker_prompt(run.task.build_prompt(run.best_code, run.best_metric), feedback, last_error)
    reply = run.client.complete("worker", prompt, max_tokens=llm.WORKER_MAX_TOKENS,
                                temperature=llm.WORKER_TEMPERATURE)
    try:
        return run.propose(reply, run.best_code), ""
    except CandidateRejected as rejected:
        return None, f"{rejected.kind}: {rejected.message}"
