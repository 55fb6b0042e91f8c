"""email_validation: the labelled data, the trusted reference, the arena referee and the real benchmark CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_benchmark_cli
from tasks.email_validation import config
from tasks.email_validation.reference import is_valid_email, why_invalid

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = REPO_ROOT / "tasks" / "email_validation"
BENCHMARK = TASK_DIR / "benchmark.py"
CASES = json.loads((TASK_DIR / "test_cases.json").read_text(encoding="utf-8"))["cases"]
INITIAL_PASSED, ORIGINAL_TOTAL = 59, 105  # must match config.INITIAL_SOLUTION_ACCURACY

# An independent statement of the rule as one regex, to fuzz the step-by-step reference against.
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
RULE_AS_REGEX = re.compile(
    r"(?=[\x21-\x7e]{1,254}\Z)"   # printable ASCII without space, at most 254 characters
    r"(?=[^@]{1,64}@)"            # local part of 1-64 characters
    rf"{ATOM}(?:\.{ATOM})*"
    rf"@(?:{LABEL}\.)+(?![0-9]+\Z){LABEL}\Z")


def run_benchmark(solution: Path, *suites: Path) -> dict:
    return run_benchmark_cli(BENCHMARK, solution, *suites)


def write_suite(path: Path, cases: list[dict]) -> Path:
    path.write_text(json.dumps({"cases": cases}), encoding="utf-8")
    return path


def write_solution(tmp_path: Path, code: str, name: str = "solution.py") -> Path:
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    return path


# --- the labelled data and the reference -------------------------------------------------------------

def test_labelled_cases_are_many_balanced_distinct_and_match_the_schema():
    assert len(CASES) >= 60
    valid = sum(case["expected"] for case in CASES)
    assert 0.4 <= valid / len(CASES) <= 0.6
    assert len({case["address"] for case in CASES}) == len(CASES)
    for case in CASES:
        jsonschema.validate(case, config.CASE_SCHEMA)
        assert case.get("note"), f"case {case['address']!r} says nothing about why"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["note"])
def test_reference_agrees_with_every_label(case):
    assert is_valid_email(case["address"]) is case["expected"], why_invalid(case["address"])


@pytest.mark.parametrize("address, expected", [
    ("a" * 64 + "@x.io", True),
    ("a" * 65 + "@x.io", False),
    ("a@" + "b" * 63 + ".io", True),
    ("a@" + "b" * 64 + ".io", False),
    ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, True),    # 254 characters
    ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 62, False),   # 255 characters
    ("!#$%&'*+-/=?^_`{|}~@x.io", True),
    ("a@b.c1", True),
    ("a@b.12", False),
    ("a@1.2.c", True),
    ("a@b", False),
    ("a@b.", False),
    ("a@.b.c", False),
    ("a@b..c", False),
    ("a@-b.c", False),
    ("a@b-.c", False),
    ("a.@b.c", False),
    (".a@b.c", False),
    ("a..a@b.c", False),
    ('"a"@b.c', False),
    ("a@[1.2.3.4]", False),
    ("a(x)@b.c", False),
    ("a@b@c.d", False),
    ("a b@c.d", False),
    ("a@b.c\n", False),
    ("a\x7f@b.c", False),
    ("\u00e5@b.c", False),
    ("a@b.c\u00a0", False),        # non-breaking space: non-ASCII and whitespace
    ("", False),
])
def test_reference_on_edge_cases(address, expected):
    assert is_valid_email(address) is expected


def test_reference_says_which_rule_is_broken():
    assert "64" in why_invalid("a" * 65 + "@x.io")
    assert "all digits" in why_invalid("a@b.123")
    assert "254" in why_invalid("a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".io")
    assert why_invalid("a@b.io") is None


JUNK = [".", "..", "-", "@", " ", "\t", "\n", "\x00", "\x7f", '"', "(", ")", "[", "]", ",", ";", ":",
        "\\", "<", "_", "\u00e9", "\u200b", "\u0430"]
SPOILERS = ["none", "none", "none", "insert junk", "replace with junk", "numeric last label",
            "hyphen at a label edge", "dot at a local edge", "trailing dot"]
valid_labels = st.from_regex(LABEL, fullmatch=True)
valid_last_labels = valid_labels.filter(lambda label: not label.isdigit())


@st.composite
def near_valid_addresses(draw):
    """Valid addresses, half of them with parts at or just past a length limit, often spoiled once."""
    if draw(st.booleans()):  # lengths at and around the 64, 63 and 254 limits
        local = "l" * draw(st.sampled_from([63, 64, 65]))
        labels = ["d" * draw(st.sampled_from([62, 63, 64])) for _ in range(2)]
        so_far = len(local) + 1 + sum(len(label) + 1 for label in labels)
        labels.append("t" * min(63, draw(st.sampled_from([253, 254, 255])) - so_far))
    else:  # zero leading labels makes a single-label domain
        local = ".".join(draw(st.lists(st.from_regex(ATOM, fullmatch=True), min_size=1, max_size=3)))
        labels = draw(st.lists(valid_labels, min_size=0, max_size=3)) + [draw(valid_last_labels)]
    spoiler = draw(st.sampled_from(SPOILERS))
    if spoiler == "hyphen at a label edge":
        index = draw(st.integers(0, len(labels) - 1))
        labels[index] = draw(st.sampled_from(["-" + labels[index], labels[index] + "-"]))
    elif spoiler == "numeric last label":
        labels.append(str(draw(st.integers(0, 999))))
    elif spoiler == "dot at a local edge":
        local = draw(st.sampled_from(["." + local, local + ".", local.replace(".", "..", 1)]))
    address = local + "@" + ".".join(labels)
    if spoiler == "trailing dot":
        address += "."
    elif spoiler in ("insert junk", "replace with junk"):
        position = draw(st.integers(0, len(address) - 1))
        skip = 1 if spoiler == "replace with junk" else 0
        address = address[:position] + draw(st.sampled_from(JUNK)) + address[position + skip:]
    return address


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(near_valid_addresses(), st.text(max_size=40)))
def test_reference_matches_an_independent_regex_of_the_rule(address):
    assert is_valid_email(address) is bool(RULE_AS_REGEX.fullmatch(address)), why_invalid(address)


SWEPT_CHARACTERS = [chr(code) for code in range(128)] + ["\u00e9", "\u00a0", "\u200b", "\u0430", "\U0001f600"]


@pytest.mark.parametrize("template", [
    "{c}@ab.cd", "a{c}@ab.cd", "a{c}b@ab.cd", "a.{c}@ab.cd",      # local part: alone, inside, after a dot
    "ab@{c}.cd", "ab@a{c}b.cd", "ab@ab.c{c}", "ab@ab.cd{c}",      # domain: a label alone, inside, at the end
])
def test_every_character_in_every_position_matches_the_regex(template):
    for character in SWEPT_CHARACTERS:
        address = template.replace("{c}", character)
        assert is_valid_email(address) is bool(RULE_AS_REGEX.fullmatch(address)), (address, why_invalid(address))


def test_every_length_around_the_limits_matches_the_regex():
    addresses = ["l" * size + "@ab.cd" for size in range(1, 70)]
    addresses += ["a@" + "d" * size + ".cd" for size in range(1, 70)]
    addresses += ["a@cd." + "t" * size for size in range(1, 70)]
    for total in range(245, 262):  # a 64-character local part and labels of 63 filling the rest
        domain_size = total - 65
        labels = ["d" * 63] * (domain_size // 64) + ["t" * (domain_size % 64 or 1)]
        addresses.append("l" * 64 + "@" + ".".join(labels))
    assert {len(address) for address in addresses} >= {253, 254, 255}
    for address in addresses:
        assert is_valid_email(address) is bool(RULE_AS_REGEX.fullmatch(address)), (len(address), why_invalid(address))


# --- config: prompt and arena referee ----------------------------------------------------------------

def test_reference_check_accepts_right_labels_and_explains_wrong_ones():
    assert config.reference_check({"address": "a.b@c.de", "expected": True}) is None
    assert config.reference_check({"address": "a..b@c.de", "expected": False, "note": "double dot"}) is None
    wrong_invalid = config.reference_check({"address": "a..b@c.de", "expected": True})
    assert wrong_invalid.startswith("reference says invalid:") and "two dots" in wrong_invalid
    wrong_valid = config.reference_check({"address": "a.b@c.de", "expected": False})
    assert wrong_valid.startswith("reference says valid:")


@pytest.mark.parametrize("case", [
    {"address": "a@b.cd"},
    {"address": "a@b.cd", "expected": "true"},
    {"address": 7, "expected": True},
    {"address": "a@b.cd", "expected": True, "answer": "cheat"},
    {"address": "a" * 401, "expected": False},
])
def test_reference_check_rejects_cases_outside_the_schema(case):
    assert config.reference_check(case).startswith("case does not match CASE_SCHEMA")


def test_prompt_states_the_rule_and_shows_code_and_score():
    code = "def is_valid_email(address):\n    return '{metric}' in address  # {code}\n"
    prompt = config.build_prompt(code, 56.19047619047619)
    assert "56.2%" in prompt
    assert code.rstrip() in prompt  # placeholders inside the code are left alone
    for rule_text in ("1 to 64", "1 to 63", "254", "! # $ % & ' * + - / = ? ^ _ ` { | } ~",
                      "must not be all digits", "Exactly one", "is_valid_email(address: str) -> bool"):
        assert rule_text in prompt
    assert "not measured yet" in config.build_prompt(code, None)
    assert config.REQUIRED_FUNCTIONS == {"is_valid_email": ["address"]}


def test_the_prompts_examples_agree_with_the_reference():
    examples = re.findall(r'"([^"\s]+)" -> (True|False)', config.PROMPT_TEMPLATE)
    assert len(examples) >= 5
    for address, verdict in examples:
        assert is_valid_email(address) is (verdict == "True"), address


# --- the benchmark, through the real command line ----------------------------------------------------

def test_initial_solution_scores_exactly_the_recorded_accuracy_every_time():
    first = run_benchmark(TASK_DIR / "initial_solution.py")
    second = run_benchmark(TASK_DIR / "initial_solution.py")
    assert first["status"] == "ok", first["message"]
    assert first["metric"] == config.INITIAL_SOLUTION_ACCURACY == 100.0 * INITIAL_PASSED / ORIGINAL_TOTAL
    assert first["details"]["suites"] == {"original": {"passed": INITIAL_PASSED, "total": ORIGINAL_TOTAL,
                                                       "score": config.INITIAL_SOLUTION_ACCURACY}}
    assert f"accuracy:{config.INITIAL_SOLUTION_ACCURACY:g}" in first["stdout"].splitlines()
    assert (second["metric"], second["details"]) == (first["metric"], first["details"])
    failures = first["details"]["failures"]
    assert 0 < len(failures) <= 8 and first["details"]["wrong"] == ORIGINAL_TOTAL - INITIAL_PASSED
    assert all(failure["expected"] is not failure["got"] and failure["note"] for failure in failures)


def test_a_correct_solution_scores_100(tmp_path):
    # The reference is self-contained (standard library only), so a copy of it is a correct candidate.
    solution = write_solution(tmp_path, (TASK_DIR / "reference.py").read_text(encoding="utf-8"))
    result = run_benchmark(solution)
    assert result["status"] == "ok", result["message"]
    assert result["metric"] == config.PERFECT_SCORE
    assert result["details"]["failures"] == [] and result["details"]["wrong"] == 0


def test_extra_suites_are_scored_with_the_original_and_broken_down(tmp_path):
    agreeing = write_suite(tmp_path / "agreeing.json", [
        {"address": "a@b.cd", "expected": True}, {"address": "nodot@x", "expected": False}])
    tricky = write_suite(tmp_path / "tricky.json", [
        {"address": "a@b.cd", "expected": True},
        {"address": "a..b@c.de", "expected": False, "note": "double dot"},
        {"address": "a@b.123", "expected": False}])
    result = run_benchmark(TASK_DIR / "initial_solution.py", agreeing, tricky)
    assert result["status"] == "ok", result["message"]
    suites = result["details"]["suites"]
    assert suites["original"] == {"passed": INITIAL_PASSED, "total": ORIGINAL_TOTAL,
                                  "score": config.INITIAL_SOLUTION_ACCURACY}
    assert suites["agreeing.json"] == {"passed": 2, "total": 2, "score": 100.0}
    assert suites["tricky.json"] == {"passed": 1, "total": 3, "score": pytest.approx(100 / 3)}
    assert result["metric"] == pytest.approx(100.0 * (INITIAL_PASSED + 3) / (ORIGINAL_TOTAL + 5))
    # the extra suite's failures are shown even though the original suite has more than enough
    shown = [failure for failure in result["details"]["failures"] if failure.get("suite") == "tricky.json"]
    assert {failure["address"] for failure in shown} == {"a..b@c.de", "a@b.123"}


@pytest.mark.parametrize("code, status, message_part", [
    ("def is_valid_email(address)\n    return True\n", "load_error", "SyntaxError"),
    ("def validate(address):\n    return True\n", "missing_function", "is_valid_email"),
    ("is_valid_email = 3\n", "missing_function", "is_valid_email"),
    ("def is_valid_email(address):\n    return 'yes'\n", "invalid_output", "must return True or False"),
    ("def is_valid_email(address):\n    return 1\n", "invalid_output", "returned int 1"),
    ("def is_valid_email(address):\n    return None\n", "invalid_output", "returned NoneType"),
    ("class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n\n"
     "def is_valid_email(address):\n    return AlwaysEqual()\n", "invalid_output", "AlwaysEqual"),
])
def test_bad_solutions_get_a_clear_status(tmp_path, code, status, message_part):
    result = run_benchmark(write_solution(tmp_path, code))
    assert result["status"] == status, result
    assert message_part in result["message"]
    assert result["metric"] is None
    assert "Traceback" not in result["stderr"]


def test_a_raising_solution_loses_those_cases_and_is_still_scored(tmp_path):
    code = ("def is_valid_email(address):\n"
            "    if '..' in address:\n        raise ValueError('cannot handle double dots')\n"
            "    return address.count('@') == 1\n")
    result = run_benchmark(write_solution(tmp_path, code))
    assert result["status"] == "ok", result["message"]
    raising = [case for case in CASES if ".." in case["address"]]
    assert result["details"]["raised"] == len(raising) > 0
    raised = [failure for failure in result["details"]["failures"] if str(failure["got"]).startswith("raised")]
    assert raised and "ValueError" in raised[0]["got"] and "cannot handle double dots" in raised[0]["got"]


@pytest.mark.parametrize("content, message_part", [
    ("not json", "not valid JSON"),
    ('{"tests": []}', '{"cases": [...]}'),
    ('{"cases": [{"address": "a@b.cd"}]}', "'expected' is a required property"),
    ('{"cases": [{"address": "a@b.cd", "expected": 1}]}', "case 0"),
    ('{"cases": [{"address": "a@b.cd", "expected": true, "label": "x"}]}', "Additional properties"),
])
def test_a_bad_test_suite_file_is_reported_as_bad_input(tmp_path, content, message_part):
    suite = tmp_path / "suite.json"
    suite.write_text(content, encoding="utf-8")
    result = run_benchmark(TASK_DIR / "initial_solution.py", suite)
    assert result["status"] == "bad_input", result
    assert message_part in result["message"] and "suite.json" in result["message"]


def test_the_task_loads_and_runs_through_the_task_runner():
    from tasks.task_runner import load_task, run_solution
    task = load_task("email_validation")
    assert (task.name, task.metric_name, task.higher_is_better, task.perfect_score) == \
        ("email_validation", "accuracy", True, 100.0)
    run = run_solution(task, task.initial_solution)
    assert run.ok and run.metric == config.INITIAL_SOLUTION_ACCURACY
