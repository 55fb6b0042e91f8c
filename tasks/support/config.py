"""The support task: answer customer questions about Ledgerloom (a fictional invoicing app) from its
knowledge base. Judged: the benchmark collects the answers, and `score_answers` scores them with the
deterministic rubric in rubric.py (weighted fact checks, wrong-fact penalties, a length penalty).
Only a check whose matcher cannot decide (result None) goes to the run's LLM judge (tasks/llm/judge.py).
rubric_checks.json is reviewed by hand; `python tasks/generate_rubric.py --task support` drafts a new one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tasks.support import rubric
from tasks.task_kit import fill_prompt

TASK_DIR = Path(__file__).resolve().parent
KNOWLEDGE_BASE = TASK_DIR / "knowledge_base.json"
QUESTIONS = TASK_DIR / "questions.json"
RUBRIC_CHECKS = TASK_DIR / "rubric_checks.json"

TASK_NAME = "support"
METRIC_NAME = "rubric_score"
HIGHER_IS_BETTER = True
PERFECT_SCORE = 100.0
USES_RUBRIC = True
USES_LLM_JUDGE = False  # not scored wholly by an LLM: the rubric decides, the judge only fills gaps
# initial_solution.py scores 12.33 (mean of the 10 questions' rubric scores), measured with
# `python tasks/support/benchmark.py tasks/support/initial_solution.py` and score_answers on its answers.
INITIAL_SOLUTION_SCORE = 12.33

REQUIRED_FUNCTIONS = {"answer": ["question", "kb"]}

CASE_SCHEMA = rubric.CASE_SCHEMA
reference_check = None  # no trusted reference answers: an LLM referee judges arena cases

PROMPT_TEMPLATE = (TASK_DIR / "prompt.txt").read_text(encoding="utf-8")


def build_prompt(code: str, metric) -> str:
    return fill_prompt(PROMPT_TEMPLATE, code, "not measured yet" if metric is None else f"{metric:.1f} / 100")


def load_kb() -> list[dict]:
    return json.loads(KNOWLEDGE_BASE.read_text(encoding="utf-8"))


def load_cases(test_files=()) -> dict[str, dict]:
    """{question id: case} for the task's own questions, then every case of every --tests file
    (ids "<file stem>:<index>"); a malformed test file is a ValueError naming the file and case."""
    from tasks.benchmark_cli import load_test_suites  # the one --tests reader; imported late (it loads the sandbox)

    checks = json.loads(RUBRIC_CHECKS.read_text(encoding="utf-8"))["questions"]
    cases = {q["id"]: {"question": q["question"], **checks[q["id"]]}
             for q in json.loads(QUESTIONS.read_text(encoding="utf-8"))}
    if test_files:
        kb = load_kb()
        normalized_kb = rubric.kb_text(kb)
        suites = load_test_suites([str(path) for path in test_files],
                                  lambda case: rubric.validate_case(case, kb, normalized_kb=normalized_kb))
        taken = {rubric.ORIGINAL_SUITE}
        for file_name, suite in suites.items():
            stem, copy = Path(file_name).stem, 2
            while stem in taken:   # a file called original.json, or two stems alike
                stem, copy = f"{Path(file_name).stem} ({copy})", copy + 1
            taken.add(stem)
            cases.update({f"{stem}:{index}": case for index, case in enumerate(suite)})
    return cases


def validate_case(case) -> str | None:
    """None when an arena case is well formed and answerable from this task's knowledge base."""
    return rubric.validate_case(case, load_kb())


def score_answers(answers: dict, judge: Callable[[str, str, dict], bool] | None = None,
                  test_files=()) -> dict:
    """Rubric score (0-100) of the benchmark's answers; pass the same --tests files to score their cases."""
    return rubric.score_answers(answers, load_cases(test_files), judge=judge)
