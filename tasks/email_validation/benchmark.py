"""Trusted benchmark for email_validation: accuracy (percent) of is_valid_email over labelled addresses.

    python tasks/email_validation/benchmark.py SOLUTION [--tests FILE ...]

The task's own cases (test_cases.json, suite "original") are always scored; each --tests FILE adds a
suite `{"cases": [...]}` of cases matching CASE_SCHEMA. The printed accuracy covers every case of every
suite together; details.suites has the per-suite breakdown and details.failures a few wrong answers.
A call that raises counts as a wrong answer for that case (the contract says "never raise"); a return
value that is not exactly True or False stops the run with status invalid_output.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jsonschema  # noqa: E402

from tasks.benchmark_cli import load_test_suites, main  # noqa: E402
from tasks.email_validation.config import CASE_SCHEMA, MAX_ADDRESS_CHARS, METRIC_NAME  # noqa: E402
from tasks.sandbox import CandidateException, Limits, Sandbox, SandboxError  # noqa: E402

ORIGINAL_CASES = Path(__file__).resolve().parent / "test_cases.json"
ORIGINAL_SUITE_NAME = "original"
FUNCTION_NAME = "is_valid_email"
CALL_TIMEOUT_SECONDS = 2.0  # a validator needs microseconds; this only catches hangs and runaway regexes
MAX_FAILURES_SHOWN = 8
MAX_SHOWN_ADDRESS_CHARS = 100  # longer addresses are cut in the report...
SHOW_LENGTH_FROM_CHARS = 60    # ...and from this length the true length is shown, for the 64/63/254 limits
MAX_SHOWN_TEXT_CHARS = 120


def case_problem(case) -> str | None:
    """Why a --tests case is unusable, or None."""
    try:
        jsonschema.validate(case, CASE_SCHEMA)
    except jsonschema.ValidationError as error:
        return (f'{error.message}; each case is {{"address": string (at most {MAX_ADDRESS_CHARS} characters), '
                f'"expected": true or false, "note": optional string}}')
    return None


def load_suites(extra_test_files: list[str]) -> dict[str, list[dict]]:
    """The task's own cases as "original", then each --tests file under its file name."""
    suites = {ORIGINAL_SUITE_NAME: json.loads(ORIGINAL_CASES.read_text(encoding="utf-8"))["cases"]}
    # load_test_suites never names a suite "original", so a file of that name cannot replace the task's own
    suites.update(load_test_suites(extra_test_files, validate_case=case_problem))
    return suites


def classify(box: Sandbox, address: str):
    """The candidate's verdict (a bool), or a 'raised ...' string when its function raised."""
    try:
        verdict = box.call(FUNCTION_NAME, address)
    except CandidateException as error:
        return f"raised {shorten(error.message, MAX_SHOWN_TEXT_CHARS)}"
    # `type(...) is bool`, not isinstance: True == 1 and a bool subclass must not pass for a verdict.
    if type(verdict) is not bool:
        raise SandboxError(
            "invalid_output",
            f"{FUNCTION_NAME} must return True or False (a bool), but for the address "
            f"{shorten(address, MAX_SHOWN_ADDRESS_CHARS)!r} it returned {type(verdict).__name__} "
            f"{shorten(repr(verdict), MAX_SHOWN_TEXT_CHARS)}. Return a bool, e.g. `return bool(...)`.")
    return verdict


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def describe_failure(case: dict, got, suite_name: str) -> dict:
    address = case["address"]
    failure = {"address": shorten(address, MAX_SHOWN_ADDRESS_CHARS), "expected": case["expected"], "got": got}
    if len(address) >= SHOW_LENGTH_FROM_CHARS:
        failure["length"] = len(address)
    if case.get("note"):
        failure["note"] = shorten(case["note"], MAX_SHOWN_TEXT_CHARS)
    if suite_name != ORIGINAL_SUITE_NAME:
        failure["suite"] = suite_name
    return failure


def interleave(lists: list[list], limit: int) -> list:
    """Round-robin over the suites so a few failures from every suite are shown, not only the first."""
    picked, depth = [], 0
    while len(picked) < limit and any(depth < len(items) for items in lists):
        picked.extend(items[depth] for items in lists if depth < len(items))
        depth += 1
    return picked[:limit]


def evaluate(solution_path, args) -> dict:
    suites = load_suites(getattr(args, "tests", None) or [])
    breakdown, failures_by_suite, exceptions = {}, [], 0
    with Sandbox(str(solution_path), limits=Limits(call_timeout=CALL_TIMEOUT_SECONDS)) as box:
        box.require(FUNCTION_NAME)
        for suite_name, cases in suites.items():
            passed, failures = 0, []
            for case in cases:
                got = classify(box, case["address"])
                if got is case["expected"]:
                    passed += 1
                    continue
                exceptions += isinstance(got, str)
                failures.append(describe_failure(case, got, suite_name))
            total = len(cases)
            breakdown[suite_name] = {"passed": passed, "total": total,
                                     "score": 100.0 * passed / total if total else 0.0}
            failures_by_suite.append(failures)

    passed = sum(suite["passed"] for suite in breakdown.values())
    total = sum(suite["total"] for suite in breakdown.values())
    details = {  # failures first: the loops show a model only the first few hundred characters of details
        "failures": interleave(failures_by_suite, MAX_FAILURES_SHOWN),
        "wrong": total - passed, "passed": passed, "total": total,
        "raised": exceptions,  # calls that raised an exception; each counted as a wrong answer
        "suites": breakdown,
    }
    return {"metric": 100.0 * passed / total, "details": details}


if __name__ == "__main__":
    main(evaluate, METRIC_NAME)  # --tests comes from benchmark_cli; this task adds no flags
