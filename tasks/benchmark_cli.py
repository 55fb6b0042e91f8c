"""The command line every task's benchmark.py shares.

It prints the human-readable metric line (`<METRIC_NAME>:<value>`, or `answers: <json>` for judged tasks) and,
last, one `result: <json>` line that `task_runner.run_solution` reads. Whatever the candidate printed travels
inside that JSON as escaped text, so it can never pass for a score line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any, Callable

from tasks.sandbox import OUTPUT_LOG, SandboxError, is_finite_number

OUTPUT_TAIL_CHARS = 2000


def main(evaluate: Callable[[str, argparse.Namespace], dict], metric_name: str,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, argv=None) -> None:
    parser = argparse.ArgumentParser(description=f"Score a solution; prints {metric_name}:<value>.")
    parser.add_argument("solution", help="path to the solution file to score")
    parser.add_argument("--tests", action="append", default=[], metavar="FILE",
                        help='an extra test suite, JSON {"cases": [...]}; repeatable; scored with the built-in cases')
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    result: dict[str, Any] = {"status": "ok", "metric": None, "details": {}, "message": ""}
    try:
        outcome = evaluate(args.solution, args)
        result["details"] = outcome.get("details", {})
        if "answers" in outcome:
            result["answers"] = outcome["answers"]
            print("answers: " + json.dumps(outcome["answers"], ensure_ascii=False))
        else:
            metric = outcome.get("metric")
            if not is_finite_number(metric):
                raise RuntimeError(f"the benchmark produced a non-numeric metric {metric!r}")
            result["metric"] = float(metric)
            print(f"{metric_name}:{float(metric):g}")
    except SandboxError as exc:
        result.update(status=exc.status, message=exc.message)
        print(f"status: {exc.status}: {exc.message}")
    except (OSError, ValueError) as exc:  # unreadable solution or test-suite file: the user's input
        result.update(status="bad_input", message=str(exc))
        print(f"status: bad_input: {exc}")
    except Exception as exc:  # a bug in trusted code: say so loudly, it is not the candidate's fault
        traceback.print_exc()
        result.update(status="error", message=f"benchmark error: {type(exc).__name__}: {exc}")
        print(f"status: error: {result['message']}")
    result["duration_s"] = round(time.monotonic() - started, 3)
    result["candidate_stdout"] = "".join(o["stdout"] for o in OUTPUT_LOG)[-OUTPUT_TAIL_CHARS:]
    result["candidate_stderr"] = "".join(o["stderr"] for o in OUTPUT_LOG)[-OUTPUT_TAIL_CHARS:]
    print("result: " + json.dumps(result, ensure_ascii=False, default=str))
    sys.exit(0 if result["status"] == "ok" else 1)


def load_test_suites(paths: list, validate_case: Callable[[Any], str | None] | None = None) -> dict[str, list]:
    """Read `--tests` files: {"cases": [...]} each. Returns {suite name: cases}, named by file name (with a
    number added when two files share a name, and never "original", the task's own suite); a bad file is a
    clear ValueError."""
    suites = {}
    for path in map(str, paths):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        cases = data.get("cases") if isinstance(data, dict) else None
        if not isinstance(cases, list):
            raise ValueError(f'{path}: expected an object {{"cases": [...]}}')
        for index, case in enumerate(cases):
            problem = validate_case(case) if validate_case else None
            if problem:
                raise ValueError(f"{path}: case {index}: {problem}")
        name, copy = path.rsplit("/", 1)[-1], 2
        while name in suites or name == "original":
            name, copy = f"{path.rsplit('/', 1)[-1]} ({copy})", copy + 1
        suites[name] = cases
    return suites
