"""The support task: benchmark through the real CLI, the rubric engine, and case validation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tasks.support import config, rubric
from tasks.task_runner import load_task, run_solution

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = REPO_ROOT / "tasks" / "support"
BENCHMARK = TASK_DIR / "benchmark.py"
INITIAL = TASK_DIR / "initial_solution.py"

# Sentence-level retrieval: the two best articles, their sentences that share words with the question.
GOOD_SOLUTION = r'''
import re

STOPWORDS = set("""a an the and or but if of to in on at by for with from is are was were be been am do does did
can could would should will i me my we our us you your it its this that these those there here what which who
how when where why any some all not no so as about into after before up out get got have has had just also
still need needs like want please hi hello thanks""".split())


def bag(text):
    stems = set()
    for w in re.findall(r"[a-z0-9$%]+", text.lower()):
        if w in STOPWORDS or len(w) < 2:
            continue
        for suffix in ("ing", "es", "ed", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                break
        stems.add(w)
    return stems


def answer(question, kb):
    asked = bag(question)
    ranked = sorted(kb, key=lambda a: -(2 * len(asked & bag(a["title"])) + len(asked & bag(a["body"]))))
    picked = []
    for article in ranked[:2]:
        sentences = re.split(r"(?<=[.!?])\s+", article["body"])
        best = sorted(range(len(sentences)), key=lambda i: -len(asked & bag(sentences[i])))[:3]
        picked += [sentences[i] for i in sorted(best) if asked & bag(sentences[i])]
    return " ".join(picked)[:800]
'''

KB_DUMP_SOLUTION = '''
def answer(question, kb):
    return "\\n".join(a["title"] + ": " + a["body"] for a in kb)
'''

TOP3_ARTICLES_SOLUTION = '''
import re
def answer(question, kb):
    q = set(re.findall(r"[a-z0-9]+", question.lower()))
    ranked = sorted(kb, key=lambda a: -len(q & set(re.findall(r"[a-z0-9]+", (a["title"] + " " + a["body"]).lower()))))
    return "\\n".join(a["body"] for a in ranked[:3])
'''

# Hand-written answers with every fact each question needs: the rubric must be satisfiable.
IDEAL_ANSWERS = {
    "q1": "Yes. New subscriptions, including annual ones, can be refunded in full within 14 days of the first "
          "payment, and you paid 10 days ago. You'd get the full $120 back. Request it in Settings > Billing > "
          "Request refund or email billing@ledgerloom.com. The money goes back to your original payment method "
          "and takes 5 to 10 business days to appear.",
    "q2": "Sign in with your password and choose \"Use a recovery code\" on the 2FA screen. If you have none, ask "
          "an Owner or Admin of your Team workspace to reset your 2FA in Settings > Team > Members > (your name) "
          "> Reset 2FA. Once you're in, set it up again on the new phone and generate new recovery codes.",
    "q3": "Go to Settings > Data > Export. Invoices export as CSV or JSON, or as PDF files in a ZIP archive. You "
          "can start up to 3 exports per 24 hours; the download link stays valid for 7 days.",
    "q4": "Team is $29 per month including 3 seats, and each extra seat is $8 per month, so for 5 people: "
          "$29 + 2 x $8 = $45 per month.",
    "q5": "Yes: a deleted account has a 30-day grace period; sign in during it and choose Restore account. After "
          "that everything is permanently deleted. Export your invoices first in Settings > Data > Export (CSV, "
          "JSON or PDF), and cancel your paid subscription before deleting.",
    "q6": "Yes. Business has a 99.9% monthly uptime SLA; 2 hours in a month is below 99.9% but above 99.0%, so "
          "you get a credit of 10% of that month's fee. Email support@ledgerloom.com within 30 days after the "
          "end of the month; the credit goes on your next invoice.",
    "q7": "Team allows 120 requests per minute per API key. On a 429, wait the number of seconds in the "
          "Retry-After header before retrying. Business allows 600 requests per minute.",
    "q8": "There is no Linux desktop app; use the web app in a supported browser. Offline mode is only in the "
          "mobile apps (iOS, Android), not in the web or desktop apps.",
    "q9": "Download receipts as PDFs in Settings > Billing > Billing history. Add the VAT number in Settings > "
          "Billing > Billing details; it applies to future receipts. For past ones, email billing@ledgerloom.com "
          "within 90 days of the payment and each can be re-issued once with the updated details.",
    "q10": "Yes: data is hosted in Frankfurt, Germany (EU) and Ledgerloom complies with the GDPR. Sign a DPA in "
           "Settings > Legal > DPA on any paid plan, Solo included. SSO is available only on the Business plan.",
}


def run_benchmark(solution: Path, *test_files: Path) -> tuple[dict | None, dict]:
    """(answers or None, the result line) from the real command line."""
    command = [sys.executable, str(BENCHMARK), str(solution)]
    for path in test_files:
        command += ["--tests", str(path)]
    process = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    lines = process.stdout.splitlines()
    result = json.loads(next(line for line in reversed(lines) if line.startswith("result: "))[len("result: "):])
    answer_lines = [line for line in lines if line.startswith("answers: ")]
    answers = json.loads(answer_lines[0][len("answers: "):]) if answer_lines else None
    return answers, result


def write(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    return path


def cli_score(solution: Path) -> float:
    answers, result = run_benchmark(solution)
    assert result["status"] == "ok", result["message"]
    return config.score_answers(answers)["metric"]


# ----------------------------------------------------------------------------------- end to end
def test_initial_solution_scores_the_recorded_value_deterministically():
    first_answers, first = run_benchmark(INITIAL)
    second_answers, _ = run_benchmark(INITIAL)
    assert first["status"] == "ok"
    assert set(first_answers) == {f"q{i}" for i in range(1, 11)}
    assert first_answers == second_answers
    scored = config.score_answers(first_answers)
    assert scored["metric"] == config.INITIAL_SOLUTION_SCORE == 12.33
    assert config.score_answers(second_answers) == scored
    assert scored["details"]["suites"]["original"]["total"] == 10


def test_task_runner_scores_the_initial_solution_through_score_answers():
    run = run_solution(load_task("support"), INITIAL)
    assert run.status == "ok" and run.metric == config.INITIAL_SOLUTION_SCORE
    assert run.details["suites"]["original"]["score"] == config.INITIAL_SOLUTION_SCORE


def test_good_solution_scores_clearly_higher_than_the_initial_one(tmp_path):
    good = cli_score(write(tmp_path, "good.py", GOOD_SOLUTION))
    assert good >= config.INITIAL_SOLUTION_SCORE + 40, good


def test_dumping_articles_scores_badly(tmp_path):
    dump = cli_score(write(tmp_path, "dump.py", KB_DUMP_SOLUTION))
    top3 = cli_score(write(tmp_path, "top3.py", TOP3_ARTICLES_SOLUTION))
    good = cli_score(write(tmp_path, "good.py", GOOD_SOLUTION))
    assert dump < 15, dump
    assert top3 < good - 20, (top3, good)


def test_ideal_answers_score_perfectly_and_every_original_case_is_valid():
    scored = config.score_answers(IDEAL_ANSWERS)
    assert scored["metric"] == config.PERFECT_SCORE, scored["details"]["questions"]
    kb = config.load_kb()
    assert len(kb) >= 15 and all(set(article) == {"id", "title", "body"} for article in kb)
    for question_id, case in config.load_cases().items():
        assert rubric.validate_case(case, kb) is None, question_id


def test_extra_suite_is_answered_and_scored_per_suite(tmp_path):
    suite = tmp_path / "billing_edge.json"
    suite.write_text(json.dumps({"cases": [
        {"question": "How long is the refund window?",
         "checks": [{"id": "window", "description": "14 days", "weight": 1,
                     "matcher": {"type": "keywords", "any": ["14 day"]}}]},
        {"question": "Which card brands do you take?",
         "checks": [{"id": "amex", "description": "American Express", "weight": 1,
                     "matcher": {"type": "keywords", "any": ["american express"]}}]},
    ]}), encoding="utf-8")
    answers, result = run_benchmark(INITIAL, suite)
    assert result["status"] == "ok"
    assert {"billing_edge:0", "billing_edge:1"} <= set(answers)
    assert result["details"]["suites"]["billing_edge"] == {"total": 2}
    scored = config.score_answers(answers, test_files=[suite])
    assert set(scored["details"]["suites"]) == {"original", "billing_edge"}
    assert scored["details"]["questions"]["billing_edge:0"]["score"] == 100.0  # the refund article's first sentence
    unscored = config.score_answers(answers)  # without the file its cases cannot be scored, and it says so
    assert "billing_edge:0" in unscored["details"]["unscored"]


def test_malformed_suite_file_is_bad_input_naming_the_case(tmp_path):
    suite = tmp_path / "bad.json"
    suite.write_text(json.dumps({"cases": [{"question": "Hi?", "checks": [
        {"id": "x", "description": "d", "weight": 1, "matcher": {"type": "regex", "pattern": "(a+)+"}}]}]}))
    answers, result = run_benchmark(INITIAL, suite)
    assert answers is None and result["status"] == "bad_input"
    assert "case 0" in result["message"] and "nested repetition" in result["message"]


# ----------------------------------------------------------------------------------- bad solutions
@pytest.mark.parametrize("code, status, words", [
    ("def answer(question, kb)\n    return ''\n", "load_error", "SyntaxError"),
    ("def reply(question, kb):\n    return ''\n", "missing_function", "answer"),
    ("def answer(question, kb):\n    return ['a', 'list']\n", "invalid_output", "must return the answer as a str"),
])
def test_bad_solution_files_get_a_clear_status(tmp_path, code, status, words):
    answers, result = run_benchmark(write(tmp_path, "bad.py", code))
    assert answers is None
    assert result["status"] == status and words in result["message"], result


def test_raising_answer_becomes_empty_and_is_noted(tmp_path):
    code = "def answer(question, kb):\n    if 'refund' in question:\n        raise KeyError('boom')\n    return 'ok'\n"
    answers, result = run_benchmark(write(tmp_path, "raises.py", code))
    assert result["status"] == "ok"
    assert answers["q1"] == "" and answers["q2"] == "ok"
    assert result["details"]["exceptions_total"] == 1 and "boom" in result["details"]["exceptions"]["q1"]


def test_overlong_answers_are_truncated_and_noted(tmp_path):
    answers, result = run_benchmark(write(tmp_path, "long.py", "def answer(question, kb):\n    return 'x' * 5000\n"))
    assert all(len(text) == 2000 for text in answers.values())
    assert len(result["details"]["truncated"]["questions"]) == 10


# ----------------------------------------------------------------------------------- matchers
def match(matcher: dict, text: str):
    return rubric.evaluate_matcher(matcher, rubric.normalize_text(text))


def test_keywords_any_and_all_tolerate_formatting():
    assert match({"type": "keywords", "any": ["$12"]}, "It is 12 dollars a month") is True
    assert match({"type": "keywords", "any": ["$12"]}, "USD 12.00 per month") is True
    assert match({"type": "keywords", "any": ["$12"]}, "It is $120 a year") is False
    assert match({"type": "keywords", "any": ["14 day"]}, "a fourteen-day window") is True
    assert match({"type": "keywords", "any": ["settings > billing"]}, "Open Settings → Billing") is True
    assert match({"type": "keywords", "all": ["csv", "json"]}, "CSV and JSON") is True
    assert match({"type": "keywords", "all": ["csv", "json"]}, "CSV only") is False
    assert match({"type": "keywords", "any": ["10%"]}, "a 110% credit") is False
    assert match({"type": "keywords", "any": ["10%"]}, "ten percent") is True


def test_regex_absent_and_combinators():
    assert match({"type": "regex", "pattern": r"\b5 (to )?10 business days?"}, "5–10 business days") is True
    assert match({"type": "absent", "any": ["$15"]}, "no fee at all") is True
    assert match({"type": "absent", "pattern": r"\b30 days?"}, "within 30 days") is False
    both = {"type": "all_of", "matchers": [{"type": "keywords", "any": ["a"]}, {"type": "judge"}]}
    either = {"type": "any_of", "matchers": [{"type": "keywords", "any": ["a"]}, {"type": "judge"}]}
    assert match(both, "b") is False and match(both, "a") is None   # False decides AND; otherwise undecided
    assert match(either, "a") is True and match(either, "b") is None
    assert match({"type": "absent", "matcher": {"type": "judge"}}, "x") is None


CASE = {"question": "Q?", "checks": [
    {"id": "fact", "description": "has fact", "weight": 3, "matcher": {"type": "keywords", "any": ["14 day"]}},
    {"id": "tone", "description": "is polite", "weight": 1, "matcher": {"type": "judge"}},
    {"id": "wrong", "description": "says 30 days", "weight": 2, "matcher": {"type": "absent", "any": ["30 day"]}},
]}


def test_undecided_check_goes_to_the_judge():
    calls = []

    def judge(question, answer, check):
        calls.append((question, answer, check["id"]))
        return True

    scored = rubric.score_answers({"a": "Within 14 days."}, {"a": CASE}, judge=judge)
    assert calls == [("Q?", "Within 14 days.", "tone")]
    assert scored["metric"] == 100.0 and scored["details"]["judge_calls"] == 1


def test_undecided_without_judge_counts_as_not_met_and_is_listed():
    scored = rubric.score_answers({"a": "Within 14 days."}, {"a": CASE})
    question = scored["details"]["questions"]["a"]
    assert question["score"] == 75.0 and question["undecided"] == ["tone"]
    assert scored["details"]["undecided"] == 1 and "is polite" in question["failed"]


def test_failing_judge_is_undecided_not_a_crash():
    def judge(question, answer, check):
        raise TimeoutError("model busy")

    question = rubric.score_answers({"a": "14 days"}, {"a": CASE}, judge=judge)["details"]["questions"]["a"]
    assert question["undecided"] == ["tone"] and "model busy" in question["judge_errors"][0]


def test_penalties_length_factor_and_missing_answers():
    scored = rubric.score_answers({"a": "14 days, or maybe 30 days.", "b": 7, "zzz": "extra"},
                                  {"a": CASE, "b": CASE, "c": CASE})
    questions = scored["details"]["questions"]
    assert questions["a"]["score"] == 25.0 and questions["a"]["wrong_facts"] == ["says 30 days"]  # (3 - 2) / 4
    assert questions["b"]["score"] == 0.0 and questions["c"]["score"] == 0.0
    assert scored["details"]["unscored"] == ["zzz"] and len(scored["details"]["problems"]) == 2
    padded = "14 days. " + "filler " * 300
    long_case = dict(CASE, checks=CASE["checks"][:1])
    long_score = rubric.score_answers({"a": padded}, {"a": long_case})["details"]["questions"]["a"]
    assert long_score["score"] == pytest.approx(100 * 800 / len(padded), abs=0.01)
    assert rubric.score_answers({"a": ""}, {"a": CASE})["metric"] == 0.0  # absent checks earn nothing alone


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_scores_within_bounds(text):
    for case in config.load_cases().values():
        score = rubric.score_question(case["question"], text, case)["score"]
        assert 0.0 <= score <= 100.0


# ----------------------------------------------------------------------------------- validate_case
def good_case(**changes) -> dict:
    case = {"question": "How much is Team for 5 people?", "checks": [
        {"id": "total", "description": "$45 a month", "weight": 2, "matcher": {"type": "keywords", "any": ["$45"]}},
        {"id": "seat", "description": "$8 per extra seat", "weight": 1,
         "matcher": {"type": "all_of", "matchers": [{"type": "keywords", "all": ["$8"]},
                                                    {"type": "regex", "pattern": r"extra seats?"}]}},
        {"id": "no-biz", "description": "uses $6", "weight": 1,
         "matcher": {"type": "absent", "any": ["$6", "something not in the kb"]}},
    ]}
    case.update(changes)
    return case


def deeply_nested(levels: int) -> dict:
    matcher = {"type": "keywords", "any": ["csv"]}
    for _ in range(levels):
        matcher = {"type": "all_of", "matchers": [matcher]}
    return matcher


def with_check(matcher: dict, **fields) -> dict:
    check = {"id": "c", "description": "d", "weight": 1, "matcher": matcher, **fields}
    return good_case(checks=[check])


@pytest.mark.parametrize("case, reason", [
    ({"checks": []}, "question"),
    (good_case(question=""), "question"),
    (with_check({"type": "keywords"}), "checks/0/matcher"),
    (with_check({"type": "fuzzy", "any": ["x"]}), "checks/0/matcher"),
    (with_check({"type": "keywords", "any": ["csv"]}, weight=0), "weight"),
    (with_check({"type": "keywords", "any": ["csv"]}, weight=-1), "weight"),
    (with_check({"type": "regex", "pattern": "(unclosed"}), "does not compile"),
    (with_check({"type": "regex", "pattern": r"(\w+\s?)*done"}), "nested repetition"),
    (with_check({"type": "regex", "pattern": r".*a.*b.*c"}), "variable-length"),
    (with_check({"type": "keywords", "all": ["csv", "blockchain invoices"]}), "appear nowhere in the knowledge base"),
    (with_check({"type": "keywords", "any": ["quantum", "teleport"]}), "none of the keywords"),
    (with_check({"type": "keywords", "any": ["   "]}), "blank after normalization"),
    (good_case(checks=good_case()["checks"][:1] + [
        {"id": "c", "description": "d", "weight": 1, "matcher": {"type": "absent", "any": [" "]}}]),
     "blank after normalization"),
    (with_check({"type": "absent", "any": ["$6"]}), "at least one credit check"),
    (good_case(checks=good_case()["checks"] + [good_case()["checks"][0]]), "unique"),
    (with_check(deeply_nested(3000)), "nested more than"),
    (["not", "a", "case"], "is not of type 'object'"),
])
def test_validate_case_rejects_malformed_cases_with_a_reason(case, reason):
    problem = rubric.validate_case(case, config.load_kb())
    assert problem is not None and reason in problem, problem


def test_validate_case_accepts_a_well_formed_case():
    assert rubric.validate_case(good_case(), config.load_kb()) is None
    assert config.validate_case(with_check({"type": "judge"})) is None


def test_prompt_carries_code_metric_and_contract():
    prompt = config.build_prompt("def answer(question, kb):\n    return 'x'\n", 12.33)
    assert "return 'x'" in prompt and "12.3 / 100" in prompt and "answer(question: str, kb: list[dict]) -> str" in prompt
    assert "not measured yet" in config.build_prompt("pass", None)
    assert config.reference_check is None and config.CASE_SCHEMA["required"] == ["question", "checks"]
