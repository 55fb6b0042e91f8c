"""The reviewer: sees the full history and explains, as schema-validated JSON, why an attempt did not improve."""
from __future__ import annotations

from tasks.harness import Run, sibling
from tasks.llm import BudgetExceeded, LLMError

llm = sibling(__file__, "llm")


def review(run: Run, attempts: list[dict], feedback_history: list[dict]) -> tuple[dict | None, str]:
    """(feedback, "") or (None, why the reviewer gave none). A reviewer failure never stops the loop."""
    prompt = llm.reviewer_prompt(run.task.build_prompt(run.best_code, run.best_metric), attempts, feedback_history)
    try:
        reply = run.client.complete("reviewer", prompt, schema=llm.FEEDBACK_SCHEMA,
                                    max_tokens=llm.REVIEWER_MAX_TOKENS, temperature=llm.REVIEWER_TEMPERATURE)
    except BudgetExceeded:
        raise
    except LLMError as error:
        return None, f"reviewer failed: {error}"
    if reply.data is None:  # truncated JSON: the client validated nothing
        return None, "reviewer's answer was cut off at its token limit"
    return reply.data, ""
