"""LLM judges for judged tasks: per-check verdicts for rubric tasks, holistic 0-100 scores for the rest.

The judge sees the question, the answer and the grading criterion, nothing else: never the level, run,
seed or model that wrote the answer, so it cannot favour one level over another.

USES_RUBRIC tasks (support): the rubric engine (tasks/support/rubric.py) decides every check its
deterministic matchers can, and calls `judge(question, answer, check) -> bool` only for a check whose
matcher says None (a {"type": "judge"} matcher, or an any_of/all_of that one leaves open). The harness
builds the judge with `make_judge(run.client)` and passes it to `score_answers(answers, judge=...)`.

USES_LLM_JUDGE tasks (scored wholly by the LLM): the same judge object has `judge_answers(questions,
answers, grading_notes)`, a 0-100 score per answer whose mean is the metric. A task's config.py uses it so:

    USES_LLM_JUDGE = True
    GRADING_NOTES = (TASK_DIR / "grading_notes.txt").read_text(encoding="utf-8")   # str, or {question id: str}

    def score_answers(answers: dict, judge=None) -> dict:
        if judge is None:
            raise ValueError("task X is scored by an LLM judge; run it through the harness, which passes "
                             "judge=tasks.llm.judge.make_judge(client)")
        return judge.judge_answers(load_questions(), answers, GRADING_NOTES)   # {id: question text}

and its benchmark prints `answers: {question id: text}` as every judged benchmark does.
Both paths cache verdicts per judge object, and an LLM failure never stops the scoring: a check counts
as not met (and is listed under the question's judge_errors), an answer scores 0 (and is listed).
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Mapping

from .base import LLMError

JUDGE_ROLE = "judge"
JUDGE_TEMPERATURE = 0.0          # verdicts must be repeatable
CHECK_MAX_TOKENS = 300           # one sentence of reason plus a boolean
ANSWER_MAX_TOKENS = 400
MAX_TEXT_CHARS_IN_PROMPT = 4000  # benchmarks cap answers at 2000; anything longer is cut, and the cut is shown
MAX_REASON_CHARS = 300
MAX_FAILURES_KEPT = 50
PASS_SCORE = 80.0                # a holistically judged answer "passes" at this score (as in the rubric)

PROMPT_DIR = Path(__file__).resolve().parent
CHECK_PROMPT = (PROMPT_DIR / "judge_prompt.txt").read_text(encoding="utf-8")
ANSWER_PROMPT = (PROMPT_DIR / "judge_answer_prompt.txt").read_text(encoding="utf-8")
CREDIT_KIND = ("The criterion names something a good answer does: criterion_met is true when this answer "
               "does it.")
PENALTY_KIND = ("The criterion names a mistake (a wrong or confusable fact): criterion_met is true when this "
                "answer makes that mistake, false when it does not.")

CHECK_VERDICT_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["reason", "criterion_met"],
    "properties": {"reason": {"type": "string"}, "criterion_met": {"type": "boolean"}},
}
ANSWER_SCORE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["reason", "score"],
    "properties": {"reason": {"type": "string"}, "score": {"type": "integer", "minimum": 0, "maximum": 100}},
}

# Hostile text (a candidate's answer, an arena case) must not close the block it sits in.
_PROMPT_TAGS = re.compile(r"<\s*/?\s*(question|answer|criterion|grading_notes)\s*>", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{(question|answer|criterion|criterion_kind|grading_notes)\}")


class JudgeError(LLMError):
    """The judge could not reach a verdict (the LLM failed, or its reply was cut off)."""


def make_judge(client) -> "LLMJudge | None":
    """The judge a judged task's score_answers(answers, judge=...) expects; None without a client
    (then undecided rubric checks count as not met)."""
    return None if client is None else LLMJudge(client)


class LLMJudge:
    """`judge(question, answer, check) -> bool` for rubric checks, plus `judge_answers(...)` for whole answers.

    Calling it raises JudgeError when the LLM fails; rubric.score_question counts that check as not met and
    records the error. Failures are also kept in `failures`; successful verdicts are cached."""

    def __init__(self, client):
        self.client = client
        self.failures: list[str] = []
        self.llm_calls = 0
        self.cache_hits = 0
        self._verdicts: dict[tuple, bool] = {}
        self._scores: dict[tuple, tuple[int, str]] = {}
        self._lock = threading.Lock()   # arena levels may score from several threads

    # ---- one rubric check ----------------------------------------------------------------------------
    def __call__(self, question: str, answer: str, check: dict) -> bool:
        penalty = _is_penalty(check)
        # the verdict depends on exactly what the prompt shows, so that is the cache key
        key = (question, answer, check["description"], penalty)
        with self._lock:
            if key in self._verdicts:
                self.cache_hits += 1
                return self._verdicts[key]
        prompt = render_check_prompt(question, answer, check)
        data = self._ask(prompt, CHECK_VERDICT_SCHEMA, CHECK_MAX_TOKENS, what=f"check {check.get('id', '?')!r}")
        met = (not data["criterion_met"]) if penalty else bool(data["criterion_met"])
        with self._lock:
            self._verdicts[key] = met
        return met

    # ---- whole answers (USES_LLM_JUDGE tasks) -------------------------------------------------------
    def judge_answers(self, questions, answers: dict, grading_notes: str | Mapping[str, str]) -> dict:
        """{"metric": mean 0-100 score, "details": per-question score and reason}; see judge_answers()."""
        questions = _question_texts(questions)
        if not isinstance(answers, dict):
            raise ValueError(f"answers must be a dict of question id -> answer text, got {type(answers).__name__}")
        scored, problems, errors, calls_before = {}, [], [], self.llm_calls
        for qid, question in questions.items():
            answer = answers.get(qid, "")
            if not isinstance(answer, str):
                problems.append(f"{qid}: answer is {type(answer).__name__}, scored 0")
                answer = ""
            if not answer.strip():
                if qid not in answers:
                    problems.append(f"{qid}: no answer, scored 0")
                scored[qid] = {"score": 0.0, "reason": "empty answer"}
                continue
            notes = grading_notes.get(qid, "") if isinstance(grading_notes, Mapping) else grading_notes
            try:
                score, reason = self.score_answer(question, answer, notes)
            except JudgeError as exc:
                errors.append(f"{qid}: {exc}"[:300])
                scored[qid] = {"score": 0.0, "reason": "the judge failed; scored 0"}
                continue
            scored[qid] = {"score": float(score), "reason": reason}
        return {"metric": round(sum(r["score"] for r in scored.values()) / len(scored), 2) if scored else 0.0,
                "details": _holistic_details(scored, answers, problems, errors, self.llm_calls - calls_before)}

    def score_answer(self, question: str, answer: str, grading_notes: str) -> tuple[int, str]:
        """(0-100 score, reason) for one answer; raises JudgeError when the LLM fails."""
        key = (question, answer, grading_notes)
        with self._lock:
            if key in self._scores:
                self.cache_hits += 1
                return self._scores[key]
        data = self._ask(render_answer_prompt(question, answer, grading_notes), ANSWER_SCORE_SCHEMA,
                         ANSWER_MAX_TOKENS, what="answer score")
        result = (int(data["score"]), data["reason"][:MAX_REASON_CHARS])
        with self._lock:
            self._scores[key] = result
        return result

    def summary(self) -> dict:
        with self._lock:
            return {"llm_calls": self.llm_calls, "cache_hits": self.cache_hits,
                    "failures": len(self.failures), "last_failures": self.failures[-5:]}

    # ---- the one LLM call ------------------------------------------------------------------------------
    def _ask(self, prompt: str, schema: dict, max_tokens: int, *, what: str) -> dict:
        with self._lock:
            self.llm_calls += 1
        try:
            reply = self.client.complete(JUDGE_ROLE, prompt, schema=schema, max_tokens=max_tokens,
                                         temperature=JUDGE_TEMPERATURE)
        except LLMError as exc:   # BudgetExceeded too: the loop notices at its own next call
            raise self._failed(what, f"{type(exc).__name__}: {exc}") from exc
        if reply.truncated or not isinstance(reply.data, dict):
            raise self._failed(what, f"the reply was cut off at {max_tokens} tokens, no verdict")
        return reply.data

    def _failed(self, what: str, why: str) -> JudgeError:
        message = f"judge failed on {what}: {why}"[:400]
        with self._lock:
            self.failures.append(message)
            del self.failures[:-MAX_FAILURES_KEPT]
        return JudgeError(message)


def judge_answers(client, questions, answers: dict, grading_notes: str | Mapping[str, str]) -> dict:
    """Holistic LLM scoring: each answer 0-100 against `grading_notes` (one text, or {question id: text});
    `questions` is {id: question text} or a list of {"id", "question"} (a questions.json). Missing or empty
    answers score 0 without a call; a failed judge call scores 0 and is listed in details.judge_errors."""
    return LLMJudge(client).judge_answers(questions, answers, grading_notes)


# ---- prompts ----------------------------------------------------------------------------------------
def render_check_prompt(question: str, answer: str, check: dict) -> str:
    """The whole prompt for one rubric check: the question, the answer and the check's description only."""
    return _fill(CHECK_PROMPT, {
        "question": _prompt_safe(question), "answer": _prompt_safe(answer),
        "criterion": _prompt_safe(check["description"]),
        "criterion_kind": PENALTY_KIND if _is_penalty(check) else CREDIT_KIND})


def render_answer_prompt(question: str, answer: str, grading_notes: str) -> str:
    return _fill(ANSWER_PROMPT, {"question": _prompt_safe(question), "answer": _prompt_safe(answer),
                                 "grading_notes": _prompt_safe(grading_notes or "(none)")})


def _fill(template: str, values: dict) -> str:
    # one pass, so text inserted for one placeholder is never searched for another
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _prompt_safe(text: str) -> str:
    text = _PROMPT_TAGS.sub("", str(text))
    if len(text) > MAX_TEXT_CHARS_IN_PROMPT:
        text = text[:MAX_TEXT_CHARS_IN_PROMPT] + f" [... cut: {len(text) - MAX_TEXT_CHARS_IN_PROMPT} more characters]"
    return text.strip() or "(empty)"


def _is_penalty(check: dict) -> bool:
    # the rubric's rule (rubric.is_penalty), repeated here so tasks/llm does not import a task
    return check.get("matcher", {}).get("type") == "absent"


def _question_texts(questions) -> dict[str, str]:
    if isinstance(questions, Mapping):
        pairs = questions.items()
    elif isinstance(questions, list) and all(isinstance(q, dict) and "id" in q and "question" in q for q in questions):
        pairs = ((q["id"], q["question"]) for q in questions)
    else:
        raise ValueError('questions must be {question id: question text} or a list of {"id", "question"} objects')
    texts = {str(qid): text for qid, text in pairs}
    bad = [qid for qid, text in texts.items() if not isinstance(text, str) or not text.strip()]
    if bad:
        raise ValueError(f"questions {bad[:5]} have no question text; each needs a non-empty string")
    return texts


def _holistic_details(scored: dict, answers: dict, problems: list, errors: list, calls: int) -> dict:
    suites: dict[str, dict] = {}
    for qid, result in scored.items():
        # ids "<file stem>:<index>" come from --tests files, as in the rubric
        suite = suites.setdefault(qid.rsplit(":", 1)[0] if ":" in qid else "original",
                                  {"passed": 0, "total": 0, "score": 0.0})
        suite["total"] += 1
        suite["passed"] += result["score"] >= PASS_SCORE
        suite["score"] += result["score"]
    for suite in suites.values():
        suite["score"] = round(suite["score"] / suite["total"], 2)
    details = {"questions": scored, "suites": suites, "judge_calls": calls,
               "scoring": "each answer scored 0-100 by an LLM judge against the grading notes; metric = mean"}
    unscored = sorted(set(answers) - set(scored))
    if unscored:
        details["unscored"] = unscored[:20]
    if problems:
        details["problems"] = problems[:20]
    if errors:
        details["judge_errors"] = errors[:20]
    return details
