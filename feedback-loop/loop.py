"""Level 2, the Feedback loop: level 1's keep-if-better, plus a reviewer that explains each failure.

After every attempt that did not improve (a worse score, a crash, or an answer that could not be used), the
reviewer reads the whole history and returns structured feedback; the worker's next prompt carries it.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.attempts import failure_feedback, summarize_change  # noqa: E402
from tasks.harness import Iteration, Run, sibling  # noqa: E402

llm = sibling(__file__, "llm")
worker = sibling(__file__, "worker")
reviewer = sibling(__file__, "reviewer")


class FeedbackLoop:
    level = "feedback-loop"

    def start(self, run: Run) -> dict:
        return {"attempts": [], "feedback_history": [], "feedback": None, "last_error": ""}

    def iterate(self, run: Run, state: dict, index: int) -> Iteration:
        best_code = run.best_code
        code, unusable = worker.propose_change(run, state["feedback"], state["last_error"])
        if code is None:
            attempt = {"iteration": index, "summary": "unusable answer", "metric": None, "accepted": False,
                       "status": "rejected:" + unusable.split(":", 1)[0], "feedback_text": unusable[:400]}
            outcome = Iteration(None, False, attempt["status"], note=unusable)
        else:
            result = run.evaluate(code, index)
            accepted = result.ok and run.task.is_better(result.metric, run.best_metric)
            if accepted:
                run.accept(code, result.metric)
            attempt = {"iteration": index, "summary": summarize_change(best_code, code), "metric": result.metric,
                       "accepted": accepted, "status": result.status,
                       "feedback_text": "" if accepted else failure_feedback(run.task, result, run.best_metric),
                       "stdout": result.stdout_tail[-llm.TAIL_CHARS:], "stderr": result.stderr_tail[-llm.TAIL_CHARS:]}
            outcome = Iteration(result.metric, accepted, result.status, note=result.message,
                                benchmark_s=result.duration_s)
        state["attempts"].append(attempt)
        state["last_error"] = "" if attempt["accepted"] else attempt["feedback_text"]
        if attempt["accepted"]:
            state["feedback"] = None
            return outcome
        feedback, problem = reviewer.review(run, state["attempts"], state["feedback_history"])
        state["feedback"] = feedback
        if feedback is not None:
            state["feedback_history"].append({"iteration": index, "feedback": feedback})
        outcome.extra = {"feedback": feedback, "reviewer_problem": problem}
        return outcome
