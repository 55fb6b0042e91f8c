"""Level 4, the Arena loop (arena-loop/): end to end through run.py / experiment.py with the scripted provider,
plus admission (schema, dedup, referee) and propose() mutation at unit level."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.harness import build_parser, sibling
from tasks.llm import make_client
from tasks.task_runner import load_task

REPO = Path(__file__).resolve().parents[1]
ARENA_DIR = REPO / "arena-loop"
arena = sibling(str(ARENA_DIR / "arena.py"), "arena")
code_agent = sibling(str(ARENA_DIR / "code_agent.py"), "code_agent")
referee = sibling(str(ARENA_DIR / "referee.py"), "referee")

# A change that fixes two rule violations of the naive initial email solution (spaces, "..").
BETTER_EMAIL = '''```python
def is_valid_email(address):
    if address.count("@") != 1 or " " in address:
        return False
    local, domain = address.split("@")
    return len(local) > 0 and "." in domain and ".." not in address
```'''
PROPOSE_EDIT = """<<<<<<< SEARCH
MAX_TOKENS = 800
=======
MAX_TOKENS = 1000
>>>>>>> REPLACE"""
TIMING_FIELDS = {"llm_latency_s", "benchmark_s"}


def cases_reply(*cases) -> str:
    return json.dumps({"cases": list(cases)})


def write_script(path: Path, entries: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"role": role, "response": response}) + "\n" for role, response in entries))
    return path


def run_arena(script: Path, results: Path, *flags: str, entry: str = "run.py", iters: int = 1, **popen):
    command = [sys.executable, str(ARENA_DIR / entry), "--task", "email_validation", "--iters", str(iters),
               "--provider", f"scripted:{script}", "--results-dir", str(results), *flags]
    if popen:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def record(results: Path) -> dict:
    return json.loads((results / "email_validation" / "experiment.json").read_text())


# ----- 4a: one code agent against one test agent ---------------------------------------------------
def test_single_round_scores_the_suite_and_keeps_rejections_with_reasons(tmp_path):
    script = write_script(tmp_path / "script.jsonl", [
        ("code_agent", BETTER_EMAIL),
        ("test_agent", cases_reply({"address": "a b@site.com", "expected": False},
                                   {"address": "A  B@site.com", "expected": False},     # same input, normalized
                                   {"address": "me@site..com", "expected": True})),    # wrong label
    ])
    results = tmp_path / "results"
    run_arena(script, results, "--code", "1", "--test", "1", "--label", "single", entry="experiment.py")
    run_dir = results / "email_validation"
    rounds = record(results)["iterations"]
    assert len(rounds) == 1
    first = rounds[0]
    assert first["kept"] == ["c1"]
    assert first["cases_proposed"] == 3 and first["cases_accepted"] == 1 and first["cases_rejected"] == 2
    assert first["rejections_by_stage"] == {"duplicate": 1, "referee": 1}
    # the better code passes the accepted case: 67 of 105 own cases + 1 of 1 adversarial case
    assert first["metric"] == pytest.approx(100 * 68 / 106)
    assert first["best_before_new_cases"] == pytest.approx(100 * 67 / 105)
    assert first["test_scores"] == {"t1": -1.0}   # nothing broken, two rejections at 0.5 each
    suite = json.loads((run_dir / "adversarial_suite.json").read_text())
    assert suite == {"cases": [{"address": "a b@site.com", "expected": False}]}
    rejected = json.loads((run_dir / "rejected_cases.json").read_text())["rejected"]
    assert [(r["stage"], r["case"]["address"]) for r in rejected] == [("duplicate", "A  B@site.com"),
                                                                      ("referee", "me@site..com")]
    assert "reference says invalid" in rejected[1]["reason"]
    assert "..\" not in address" in (run_dir / "solutions" / "best.py").read_text()
    # the saved suite is in the --tests format every level's benchmark reads
    check = subprocess.run([sys.executable, "tasks/email_validation/benchmark.py", str(run_dir / "solutions" / "best.py"),
                            "--tests", str(run_dir / "adversarial_suite.json")], cwd=REPO, capture_output=True, text=True)
    assert json.loads(check.stdout.splitlines()[-1][len("result: "):])["details"]["suites"]["adversarial_suite.json"] \
        == {"passed": 1, "total": 1, "score": 100.0}


def test_label_sends_results_to_their_own_folder_unless_results_dir_is_given():
    parser = build_parser("arena")
    arena.add_arguments(parser)
    assert parser.parse_args(["--label", "single"]).results_dir == str(ARENA_DIR / "results-single")
    assert parser.parse_args(["--results-dir", "/x", "--label", "single"]).results_dir == "/x"
    assert parser.parse_args(["--label", "single", "--results-dir", "/x"]).results_dir == "/x"
    assert parser.parse_args([]).results_dir is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--code", "0"])


# ----- 4b: populations and selection -----------------------------------------------------------------
def test_population_round_replaces_the_broken_code_agent_and_the_worst_test_agent(tmp_path):
    script = write_script(tmp_path / "script.jsonl", [
        ("code_agent", BETTER_EMAIL),                     # c1 improves
        ("code_agent", "I am not sure what to change."),  # c2 gives no code: it keeps the naive solution
        ("test_agent", cases_reply({"address": "a b@site.com", "expected": False})),   # t1: breaks c2 only
        ("test_agent", cases_reply({"address": "good@site.com", "expected": False})),  # t2: wrong label
        ("mutator", PROPOSE_EDIT),
        ("mutator", json.dumps({"focus": "addresses with whitespace in odd places"})),
    ])
    results = tmp_path / "results"
    run_arena(script, results, "--code", "2", "--test", "2", "--replace-every", "1")
    first = record(results)["iterations"][0]
    assert first["test_scores"] == {"t1": 1.0, "t2": -0.5}
    assert first["breaking_cases"] == 1
    replaced = {r["kind"]: r for r in first["replaced"]}
    assert replaced["propose"] == {"kind": "propose", "parent": "c1", "child": "c3", "replaced": "c2",
                                   "outcome": "mutated", "reason": ""}
    assert replaced["focus"]["replaced"] == "t2" and replaced["focus"]["child"] == "t3"
    assert first["code_scores"]["c1"] > first["code_scores"]["c2"]   # c2 was broken by t1's case
    assert first["population"] == {"code": ["c1", "c3"], "test": ["t1", "t3"]}
    state = json.loads(sorted((results / "email_validation").glob("checkpoint-*.json"))[-1].read_text())
    level = state.get("state", state)["level_state"]
    child = next(agent for agent in level["code_agents"] if agent["id"] == "c3")
    assert "MAX_TOKENS = 1000" in child["propose_source"]
    assert next(a for a in level["test_agents"] if a["id"] == "t3")["focus"] == "addresses with whitespace in odd places"


# ----- admission ---------------------------------------------------------------------------------------
SUPPORT_CASE = {"question": "How much does the Solo plan cost per month?",
                "checks": [{"id": "price", "description": "States $12 per month", "weight": 1,
                            "matcher": {"type": "keywords", "any": ["$12"]}}]}


def scripted_client(tmp_path, entries):
    return make_client(f"scripted:{write_script(tmp_path / 'referee.jsonl', entries)}")


def test_llm_referee_rejects_a_wrong_case_and_admits_a_confirmed_one(tmp_path):
    task = load_task("support")
    assert task.config.reference_check is None   # so the LLM referee decides
    client = scripted_client(tmp_path, [("referee", json.dumps({"correct": False, "reason": "Solo is $12, not $15"})),
                                        ("referee", json.dumps({"correct": True}))])
    wrong = referee.admit(task, SUPPORT_CASE, set(), client, "spec")
    assert (wrong.accepted, wrong.stage) == (False, "referee") and "Solo is $12" in wrong.reason
    seen: set = set()
    assert referee.admit(task, SUPPORT_CASE, seen, client, "spec").accepted
    again = referee.admit(task, {**SUPPORT_CASE, "question": "  how much does the SOLO plan cost per month? "},
                          seen, client, "spec")
    assert (again.accepted, again.stage) == (False, "duplicate")   # and no third referee call was needed


def test_referee_prompt_never_shows_the_test_agents_prompt(tmp_path):
    task = load_task("support")
    prompt = sibling(str(ARENA_DIR / "llm.py"), "llm").referee_prompt("SPEC", SUPPORT_CASE,
                                                                       referee.reference_text(task, "Solo plan cost"))
    assert "SPEC" in prompt and "Solo costs $12 per month" in prompt and "Your focus" not in prompt


@pytest.mark.parametrize("case, stage", [
    ({"address": "x@y.com"}, "schema"),                                   # no expected verdict
    ({"address": "x@y.com", "expected": "yes"}, "schema"),
    ({"address": "marta.olsen@fjordpost.no", "expected": True}, "duplicate"),  # one of the task's own cases
    ({"address": "a@localhost", "expected": True}, "referee"),
])
def test_email_admission_stages(case, stage):
    task = load_task("email_validation")
    seen = {referee.case_key(task, c) for c in referee.original_cases(task)}
    decision = referee.admit(task, case, seen, client=None, spec="")
    assert (decision.accepted, decision.stage) == (False, stage)


def test_support_cases_that_need_a_model_to_score_are_refused():
    task = load_task("support")
    case = {**SUPPORT_CASE, "checks": SUPPORT_CASE["checks"] + [
        {"id": "tone", "description": "friendly", "weight": 1, "matcher": {"type": "judge"}}]}
    assert "judge" in referee.form_problem(task, case)


# ----- propose() mutation ------------------------------------------------------------------------------
@pytest.mark.parametrize("reply, outcome, reason", [
    ("```python\nimport sandbox_host\ndef propose(context)\n    return 'x'\n```", "reverted", "syntax"),
    ("```python\nimport sandbox_host\nraise RuntimeError('boom')\ndef propose(context):\n    return 'x'\n```",
     "reverted", "import"),
    ("```python\nimport sandbox_host\ndef propose(task):\n    return 'x'\n```", "reverted", "signature"),
    (PROPOSE_EDIT, "mutated", ""),
])
def test_mutated_propose_is_used_only_when_it_passes_the_three_stage_check(tmp_path, reply, outcome, reason):
    parent = code_agent.CodeAgent(id="c1", code="def f():\n    pass\n", propose_source=code_agent.DEFAULT_PROPOSE,
                                  score=50.0)
    child, record = code_agent.mutated_copy(parent, "c2", 3, scripted_client(tmp_path, [("mutator", reply)]))
    assert record["outcome"] == outcome and reason in record["reason"]
    assert (child.id, child.parent, child.code, child.score) == ("c2", "c1", parent.code, 50.0)
    if outcome == "reverted":
        assert child.propose_source == parent.propose_source
    else:
        assert "MAX_TOKENS = 1000" in child.propose_source


# ----- resume ----------------------------------------------------------------------------------------
def comparable(iterations: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_FIELDS} for entry in iterations]


def test_a_run_killed_mid_round_resumes_to_the_same_record(tmp_path):
    entries = []
    for round_number in range(3):
        entries += [("code_agent", BETTER_EMAIL if round_number == 0 else "no change from me"),
                    ("code_agent", "nothing"),
                    ("test_agent", cases_reply({"address": f"user{round_number} x@site.com", "expected": False})),
                    ("test_agent", cases_reply({"address": f"ok{round_number}@site.com", "expected": True},
                                               {"address": f"ok{round_number}@site.com", "expected": True}))]
    entries += [("mutator", PROPOSE_EDIT), ("mutator", json.dumps({"focus": "spaces"}))] * 3
    script = write_script(tmp_path / "script.jsonl", entries)
    flags = ("--code", "2", "--test", "2", "--replace-every", "2")

    straight = tmp_path / "straight"
    run_arena(script, straight, *flags, iters=3)

    resumed = tmp_path / "resumed"
    progress = resumed / "email_validation" / "round-progress.json"
    process = run_arena(script, resumed, *flags, iters=3, start_new_session=True)
    seen_phase, deadline = None, time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            saved = json.loads(progress.read_text())
        except (OSError, ValueError):
            saved = None
        # "evaluate": round 2's proposals are scored and its new cases admitted, their scoring not yet done
        if saved and saved["index"] == 2 and saved["level_state"]["round"]["phase"] == "evaluate":
            seen_phase = saved["level_state"]["round"]["phase"]
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert seen_phase is not None, "the run passed round 2's evaluation before it could be killed"
    assert process.returncode == -signal.SIGKILL
    run_arena(script, resumed, *flags, iters=3)

    assert comparable(record(resumed)["iterations"]) == comparable(record(straight)["iterations"])
    for name in ("adversarial_suite.json", "rejected_cases.json"):
        assert (resumed / "email_validation" / name).read_text() == (straight / "email_validation" / name).read_text()
    assert len(record(resumed)["iterations"]) == 3
