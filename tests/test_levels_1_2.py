"""Levels 1 and 2 end to end through their real run.py, with the scripted provider, on every task."""
import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

LEVEL_SCRIPTS = {"autoresearch": REPO_ROOT / "autoresearch" / "run.py",
                 "feedback-loop": REPO_ROOT / "feedback-loop" / "run.py"}
WORKER_ROLE = {"autoresearch": "researcher", "feedback-loop": "worker"}

# Per task: an answer that improves the initial solution (an edit block or a whole file), one that is worse,
# and one that does not parse.
SNAKE_BETTER = '''```python
from collections import deque
MOVES = {"UP": (0, -1), "DOWN": (0, 1), "LEFT": (-1, 0), "RIGHT": (1, 0)}
def choose_move(state):
    w, h = state["width"], state["height"]
    body = set(map(tuple, state["snake"][:-1]))
    head = tuple(state["snake"][0])
    start = deque([(head, None)])
    seen = {head}
    while start:
        (x, y), first = start.popleft()
        if [x, y] == state["food"] and first:
            return first
        for move, (dx, dy) in MOVES.items():
            nxt = (x + dx, y + dy)
            if 0 <= nxt[0] < w and 0 <= nxt[1] < h and nxt not in body and nxt not in seen:
                seen.add(nxt)
                start.append((nxt, first or move))
    for move, (dx, dy) in MOVES.items():
        nxt = (head[0] + dx, head[1] + dy)
        if 0 <= nxt[0] < w and 0 <= nxt[1] < h and nxt not in body:
            return move
    return "UP"
```'''
ANSWERS = {
    "email_validation": {
        "better": "<<<<<<< SEARCH\n    return len(local) > 0 and \".\" in domain\n=======\n"
                  "    return len(local) > 0 and \".\" in domain and \"..\" not in address\n>>>>>>> REPLACE",
        "worse": "```python\ndef is_valid_email(address):\n    return True\n```",
    },
    "snake": {
        "better": SNAKE_BETTER,
        "worse": "```python\ndef choose_move(state):\n    return \"UP\"\n```",
    },
    "support": {
        "better": "```python\nimport re\ndef answer(question, kb):\n"
                  "    words = set(re.findall(r'[a-z]+', question.lower()))\n"
                  "    best = max(kb, key=lambda a: len(words & set(re.findall(r'[a-z]+', (a['title'] + ' ' + a['body']).lower()))))\n"
                  "    return best['body'][:800]\n```",
        "worse": "```python\ndef answer(question, kb):\n    return 'Please contact support.'\n```",
    },
}
BROKEN = "```python\ndef oops(:\n```"
FEEDBACK = {"issue_type": "correctness", "severity": "major", "fix_suggestion": "UNIQUE-FIX-HINT-42",
            "confidence": 0.7, "pattern_detected": "none"}


def write_script(path, level, answers):
    lines = []
    for answer in answers:
        lines.append({"role": WORKER_ROLE[level], "response": answer})
        if level == "feedback-loop":
            lines.append({"role": "reviewer", "response": json.dumps(FEEDBACK)})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def run_level(level, task, script, results, *extra, check=True):
    command = [sys.executable, str(LEVEL_SCRIPTS[level]), "--task", task, "--provider", f"scripted:{script}",
               "--results-dir", str(results), *extra]
    process = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    if check:
        assert process.returncode == 0, process.stderr[-3000:]
    return process


def record(results, task):
    return json.loads((results / task / "experiment.json").read_text())


@pytest.mark.parametrize("task", ["email_validation", "snake", "support"])
@pytest.mark.parametrize("level", ["autoresearch", "feedback-loop"])
def test_better_is_kept_and_worse_broken_unparseable_are_reverted(tmp_path, level, task):
    answers = [ANSWERS[task]["worse"], BROKEN, "I would rewrite it in Rust.", ANSWERS[task]["better"]]
    script = write_script(tmp_path / "script.jsonl", level, answers)
    run_level(level, task, script, tmp_path / "results", "--iters", "4")
    data = record(tmp_path / "results", task)
    statuses = [(i["status"], i["accepted"]) for i in data["iterations"]]
    assert statuses[0] == ("ok", False)                      # worse: scored, reverted
    assert statuses[1] == ("rejected:syntax_error", False)   # broken: never benchmarked
    assert statuses[2] == ("rejected:no_code", False)        # prose only
    assert statuses[3] == ("ok", True)                       # better: kept
    assert data["iterations"][0]["metric"] < data["initial_metric"] or task == "email_validation"
    assert data["best_metric"] > data["initial_metric"]
    assert data["status"] == "complete"
    best = (tmp_path / "results" / task / "solutions" / "best.py").read_text()
    assert best != (REPO_ROOT / "tasks" / task / "initial_solution.py").read_text()
    assert (tmp_path / "results" / task / "candidates" / "iter-0004.json").is_file()
    assert data["provider"] == "scripted" and data["level"] == level


def test_reviewer_feedback_reaches_the_next_worker_prompt(tmp_path):
    answers = [ANSWERS["email_validation"]["worse"], ANSWERS["email_validation"]["better"]]
    script = write_script(tmp_path / "script.jsonl", "feedback-loop", answers)
    run_level("feedback-loop", "email_validation", script, tmp_path / "results", "--iters", "2")
    calls = [json.loads(line) for line in
             (tmp_path / "results" / "email_validation" / "llm_calls.jsonl").read_text().splitlines()]
    roles = [call["role"] for call in calls]
    assert roles == ["worker", "reviewer", "worker"]
    assert "UNIQUE-FIX-HINT-42" not in calls[0]["prompt"]
    assert "UNIQUE-FIX-HINT-42" in calls[2]["prompt"]
    # asymmetric context: the reviewer sees the history of attempts, the worker does not
    assert "History of attempts" in calls[1]["prompt"] and "History of attempts" not in calls[2]["prompt"]
    data = record(tmp_path / "results", "email_validation")
    assert data["iterations"][0]["feedback"] == FEEDBACK


CRASHING_WRAPPER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tasks import checkpoint
    crash_at = int(os.environ["CRASH_AT_SAVE"])
    real_save = checkpoint.RunDirectory.save
    def save(self, state):
        sequence = real_save(self, state)
        if sequence == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return sequence
    checkpoint.RunDirectory.save = save
    sys.argv = [{script!r}] + sys.argv[1:]
    import runpy
    runpy.run_path({script!r}, run_name="__main__")
""")


@pytest.mark.parametrize("level", ["autoresearch", "feedback-loop"])
def test_crash_then_rerun_resumes_with_identical_results(tmp_path, level):
    task = "email_validation"
    answers = [ANSWERS[task]["worse"], BROKEN, ANSWERS[task]["better"], ANSWERS[task]["worse"]]
    script = write_script(tmp_path / "script.jsonl", level, answers)
    run_level(level, task, script, tmp_path / "straight", "--iters", "4")
    wrapper = tmp_path / "crashing.py"
    wrapper.write_text(CRASHING_WRAPPER.format(root=str(REPO_ROOT), script=str(LEVEL_SCRIPTS[level])))
    crashed = subprocess.run([sys.executable, str(wrapper), "--task", task, "--provider", f"scripted:{script}",
                              "--results-dir", str(tmp_path / "resumed"), "--iters", "4"],
                             env={**__import__("os").environ, "CRASH_AT_SAVE": "3"},  # initial + 2 iterations
                             capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert crashed.returncode == -9
    assert record(tmp_path / "resumed", task)["status"] == "running"
    resumed = run_level(level, task, script, tmp_path / "resumed", "--iters", "4")
    assert "resuming at iteration 3" in resumed.stderr
    strip = lambda r: [{k: v for k, v in i.items() if k not in ("benchmark_s", "llm_latency_s")}
                       for i in r["iterations"]]
    straight, again = record(tmp_path / "straight", task), record(tmp_path / "resumed", task)
    assert strip(again) == strip(straight)
    assert again["best_metric"] == straight["best_metric"]
    assert [i["iteration"] for i in again["iterations"]] == [1, 2, 3, 4]
    # a completed run says so and does nothing more
    done = run_level(level, task, script, tmp_path / "resumed", "--iters", "4")
    assert "run complete" in done.stderr


def test_budget_cap_stops_cleanly_and_a_higher_cap_continues(tmp_path):
    task = "email_validation"
    answers = [ANSWERS[task]["worse"], ANSWERS[task]["better"], ANSWERS[task]["worse"]]
    script = write_script(tmp_path / "script.jsonl", "autoresearch", answers)
    stopped = run_level("autoresearch", task, script, tmp_path / "results", "--iters", "3", "--max-calls", "1",
                        check=False)
    assert stopped.returncode == 3
    assert "stopped cleanly" in stopped.stderr
    data = record(tmp_path / "results", task)
    assert data["status"] == "budget_exhausted" and len(data["iterations"]) == 1
    run_level("autoresearch", task, script, tmp_path / "results", "--iters", "3", "--max-calls", "5")
    data = record(tmp_path / "results", task)
    assert data["status"] == "complete" and [i["iteration"] for i in data["iterations"]] == [1, 2, 3]


def test_fresh_restarts_only_this_task(tmp_path):
    answers = [ANSWERS["email_validation"]["better"]] * 2
    script = write_script(tmp_path / "script.jsonl", "autoresearch", answers)
    run_level("autoresearch", "email_validation", script, tmp_path / "results", "--iters", "1")
    other = tmp_path / "results" / "snake"
    other.mkdir(parents=True)
    (other / "keep.txt").write_text("other task's result")
    run_level("autoresearch", "email_validation", script, tmp_path / "results", "--iters", "1", "--fresh")
    assert (other / "keep.txt").read_text() == "other task's result"
    assert len(record(tmp_path / "results", "email_validation")["iterations"]) == 1


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, str(LEVEL_SCRIPTS["autoresearch"]), "--help"],
                         capture_output=True, text=True, cwd=REPO_ROOT).stdout
    for option in ("--task", "--iters", "--provider", "--model", "--seed", "--fresh", "--max-cost", "--max-calls"):
        assert option in out


def test_budget_stop_between_worker_and_reviewer_resumes_without_a_duplicate_attempt(tmp_path):
    task = "email_validation"
    answers = [ANSWERS[task]["worse"], ANSWERS[task]["worse"], ANSWERS[task]["better"]]
    script = write_script(tmp_path / "script.jsonl", "feedback-loop", answers)
    run_level("feedback-loop", task, script, tmp_path / "straight", "--iters", "3")
    # 3 calls: worker 1, reviewer 1, then worker 2; iteration 2's reviewer call is refused by the budget
    stopped = run_level("feedback-loop", task, script, tmp_path / "capped", "--iters", "3", "--max-calls", "3",
                        check=False)
    assert stopped.returncode == 3 and "stopped cleanly at iteration 2" in stopped.stderr
    assert len(record(tmp_path / "capped", task)["iterations"]) == 1
    run_level("feedback-loop", task, script, tmp_path / "capped", "--iters", "3", "--max-calls", "20")
    strip = lambda r: [{k: v for k, v in i.items() if k not in ("benchmark_s", "llm_latency_s")}
                       for i in r["iterations"]]
    assert strip(record(tmp_path / "capped", task)) == strip(record(tmp_path / "straight", task))
    checkpoints = sorted((tmp_path / "capped" / task).glob("checkpoint-*.json"))
    attempts = json.loads(checkpoints[-1].read_text())["state"]["level_state"]["attempts"]
    assert [a["iteration"] for a in attempts] == [1, 2, 3]


def test_continuing_a_run_with_another_model_is_refused_with_what_to_do(tmp_path):
    task = "email_validation"
    first = write_script(tmp_path / "first.jsonl", "autoresearch", [ANSWERS[task]["better"]] * 2)
    other = write_script(tmp_path / "other.jsonl", "autoresearch", [ANSWERS[task]["better"]] * 2)
    run_level("autoresearch", task, first, tmp_path / "results", "--iters", "1")
    refused = run_level("autoresearch", task, other, tmp_path / "results", "--iters", "2", check=False)
    assert refused.returncode == 2
    assert "holds a run made with scripted:first.jsonl" in refused.stderr and "--fresh" in refused.stderr
    assert len(record(tmp_path / "results", task)["iterations"]) == 1  # nothing was added to the old run


def test_the_record_names_the_code_version_it_started_from(tmp_path, repo_root):
    script = write_script(tmp_path / "script.jsonl", "autoresearch", [ANSWERS["email_validation"]["better"]])
    run_level("autoresearch", "email_validation", script, tmp_path / "results", "--iters", "1")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root, capture_output=True,
                          text=True).stdout.strip()
    assert record(tmp_path / "results", "email_validation")["code_version"].startswith(head[:7])
