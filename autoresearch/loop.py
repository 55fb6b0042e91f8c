"""Level 1, the AutoResearch loop: propose, score, keep if better, else revert. Only improvements accumulate."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.code_edits import CandidateRejected  # noqa: E402
from tasks.attempts import failure_feedback, summarize_change  # noqa: E402
from tasks.harness import Iteration, Run, sibling  # noqa: E402

llm = sibling(__file__, "llm")


class AutoResearchLoop:
    level = "autoresearch"

    def start(self, run: Run) -> dict:
        return {"attempts": [], "last_error": ""}

    def iterate(self, run: Run, state: dict, index: int) -> Iteration:
        best_code = run.best_code
        prompt = llm.researcher_prompt(run.task.build_prompt(best_code, run.best_metric), state["attempts"],
                                       state["last_error"], run.task.metric_name)
        reply = run.client.complete("researcher", prompt, max_tokens=llm.MAX_TOKENS, temperature=llm.TEMPERATURE)
        try:
            code = run.propose(reply, best_code)
        except CandidateRejected as rejected:
            state["last_error"] = rejected.message
            state["attempts"].append({"iteration": index, "summary": f"unusable answer ({rejected.kind})",
                                      "metric": None, "accepted": False})
            return Iteration(None, False, f"rejected:{rejected.kind}", note=rejected.message)
        result = run.evaluate(code, index)
        accepted = result.ok and run.task.is_better(result.metric, run.best_metric)
        if accepted:
            run.accept(code, result.metric)
        state["last_error"] = "" if accepted else failure_feedback(run.task, result, run.best_metric)
        state["attempts"].append({"iteration": index, "summary": summarize_change(best_code, code),
                                  "metric": result.metric, "accepted": accepted})
        return Iteration(result.metric, accepted, result.status, note=result.message,
                         benchmark_s=result.duration_s)
