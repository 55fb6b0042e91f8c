"""Trusted benchmark for support: collect the solution's answers to the customer questions.

    python tasks/support/benchmark.py SOLUTION [--tests FILE ...]

A judged task: this prints `answers: {question id: text}` and the trusted runner scores them with
config.score_answers (the rubric). The task's own questions (questions.json) always run; each --tests
FILE adds cases `{"question", "checks"}` (config.CASE_SCHEMA), answered under ids "<file stem>:<index>".
Rules enforced here:
  * `answer(question, kb)` must return a str; anything else stops the run with status invalid_output;
  * an answer that raises becomes the empty string (it scores 0) and is noted in details.exceptions;
  * answers are cut to MAX_ANSWER_CHARS (noted in details.truncated), so no answer can carry the whole KB.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.benchmark_cli import main  # noqa: E402
from tasks.sandbox import CandidateException, Limits, Sandbox, SandboxError  # noqa: E402
from tasks.support.config import METRIC_NAME, load_cases, load_kb  # noqa: E402
from tasks.support.rubric import suite_of  # noqa: E402

FUNCTION_NAME = "answer"
CALL_TIMEOUT_SECONDS = 2.0   # retrieval over 20 articles takes milliseconds; this only catches hangs
MAX_ANSWER_CHARS = 2000      # hard cap; the rubric already penalizes answers past 800 characters
MAX_EXCEPTIONS_SHOWN = 5
MAX_SHOWN_TEXT_CHARS = 200


def shorten(text: str, limit: int = MAX_SHOWN_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def ask(box: Sandbox, question_id: str, question: str, kb: list[dict]) -> tuple[str, str | None]:
    """(answer text, None) or ("", why) when the candidate raised."""
    try:
        reply = box.call(FUNCTION_NAME, question, kb)
    except CandidateException as error:
        return "", shorten(error.message)
    if not isinstance(reply, str):
        raise SandboxError(
            "invalid_output",
            f"{FUNCTION_NAME}(question, kb) must return the answer as a str, but for question {question_id} "
            f"({shorten(question, 80)!r}) it returned {type(reply).__name__} {shorten(repr(reply), 80)}. "
            f"Return a string, e.g. ' '.join(sentences).")
    return reply, None


def evaluate(solution_path, args) -> dict:
    cases = load_cases(getattr(args, "tests", None) or [])
    kb = load_kb()
    answers, exceptions, truncated, lengths = {}, {}, [], {}
    with Sandbox(str(solution_path), limits=Limits(call_timeout=CALL_TIMEOUT_SECONDS)) as box:
        box.require(FUNCTION_NAME)
        for question_id, case in cases.items():
            text, error = ask(box, question_id, case["question"], kb)
            if error:
                exceptions[question_id] = error
            if len(text) > MAX_ANSWER_CHARS:
                truncated.append(question_id)
                text = text[:MAX_ANSWER_CHARS]
            answers[question_id] = text
            lengths[question_id] = len(text)
    suites: dict[str, dict] = {}
    for question_id in answers:
        suites.setdefault(suite_of(question_id), {"total": 0})["total"] += 1
    details = {
        "questions": len(answers),
        "suites": suites,           # the runner's score_answers adds passed/score per suite
        "answer_chars": lengths,
        "exceptions_total": len(exceptions),
        "exceptions": dict(list(exceptions.items())[:MAX_EXCEPTIONS_SHOWN]),  # each such answer is empty
    }
    if truncated:
        details["truncated"] = {"questions": truncated, "note": f"answers cut to {MAX_ANSWER_CHARS} chars"}
    return {"answers": answers, "details": details}


def add_arguments(parser) -> None:
    """No flags of its own: --tests is added by benchmark_cli for every task."""


if __name__ == "__main__":
    main(evaluate, METRIC_NAME, add_arguments=add_arguments)
