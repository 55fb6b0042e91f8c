"""The email_validation task: classify addresses under one exact, simplified rule (see prompt.txt).

Scored by accuracy against labelled cases; the arena's referee is the trusted reference in
reference.py, which is never copied into a sandbox or shown to a candidate.
"""
from __future__ import annotations

from pathlib import Path


from tasks.email_validation.reference import why_invalid
from tasks.task_kit import fill_prompt, schema_problem

TASK_NAME = "email_validation"
METRIC_NAME = "accuracy"
HIGHER_IS_BETTER = True
PERFECT_SCORE = 100.0
# initial_solution.py scores 56.19047619047619 (59 of the 105 cases in test_cases.json), measured
# with `python tasks/email_validation/benchmark.py tasks/email_validation/initial_solution.py`.
INITIAL_SOLUTION_ACCURACY = 56.19047619047619

REQUIRED_FUNCTIONS = {"is_valid_email": ["address"]}

MAX_ADDRESS_CHARS = 400  # room past the 254 limit for over-length cases, small enough to keep suites cheap
MAX_NOTE_CHARS = 300

CASE_SCHEMA = {
    "type": "object",
    "properties": {
        "address": {"type": "string", "maxLength": MAX_ADDRESS_CHARS},
        "expected": {"type": "boolean"},
        "note": {"type": "string", "maxLength": MAX_NOTE_CHARS},
    },
    "required": ["address", "expected"],
    "additionalProperties": False,
}

PROMPT_TEMPLATE = (Path(__file__).resolve().parent / "prompt.txt").read_text(encoding="utf-8")


def build_prompt(code: str, metric) -> str:
    return fill_prompt(PROMPT_TEMPLATE, code, "not measured yet" if metric is None else f"{metric:.1f}%")


def reference_check(case) -> str | None:
    """None when the reference agrees with the case's `expected`, else why it does not."""
    problem = schema_problem(case, CASE_SCHEMA)
    if problem:
        return problem
    reason = why_invalid(case["address"])
    if case["expected"] and reason is not None:
        return f"reference says invalid: {reason}"
    if not case["expected"] and reason is None:
        return "reference says valid: it follows every part of the rule (ASCII, one @, dot-atom " \
               "local part of 1-64 characters, at least two well-formed domain labels, at most 254 characters)"
    return None
