"""Level 3 (hyperagent/) end to end through its real run.py, with the scripted provider on email_validation.

The task agent's replies are whole solutions that each add one check (so each scores better than the last); the
meta-agent's replies are what the seed meta-agent hands on as edits. Assertions are on the generation folders,
the experiment record, the LLM calls the agents made (llm_calls.jsonl holds every prompt) and files on disk.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.sandbox import isolation

REPO = Path(__file__).resolve().parents[1]
RUN_PY = REPO / "hyperagent" / "run.py"
SEED_DIR = REPO / "hyperagent" / "seed"
BENCHMARK = REPO / "tasks" / "email_validation" / "benchmark.py"
CANARY = "sia-canary-level3-5d1c0a"
SEED_INSTRUCTION = 'INSTRUCTION = "Improve the score with a small, focused change to the current code."'
TIMING_FIELDS = {"llm_latency_s", "benchmark_s"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SEED_DIGESTS = {path.name: digest(path) for path in sorted(SEED_DIR.iterdir()) if path.is_file()}
BENCHMARK_DIGEST = digest(BENCHMARK)

# ----- scripted replies ---------------------------------------------------------------------------
CHECKS = [
    '    if ".." in address:\n        return False\n',
    '    if local.startswith(".") or local.endswith("."):\n        return False\n',
    '    if domain.startswith(".") or domain.endswith("."):\n        return False\n',
    '    if any(p.startswith("-") or p.endswith("-") for p in domain.split(".")):\n        return False\n',
    '    if " " in address:\n        return False\n',
    '    if len(address) > 254 or len(local) > 64:\n        return False\n',
    '    if not address.isascii():\n        return False\n',
]


def solution(n: int, comment: str = "") -> str:
    """The n-th solution (n checks): scored strictly better than the (n-1)-th."""
    return ("```python\n" + comment + "def is_valid_email(address):\n    if address.count(\"@\") != 1:\n"
            "        return False\n    local, domain = address.split(\"@\")\n" + "".join(CHECKS[:n])
            + "    return len(local) > 0 and \".\" in domain\n```")


def edit(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def marker_rewrite(marker: str, search: str = SEED_INSTRUCTION) -> str:
    return f"Reason: mark {marker}\n" + edit(search, f'INSTRUCTION = "{marker} Improve the score with one change."')


def task_replies(count: int) -> list[dict]:
    return [{"role": "task_agent", "response": solution(n)} for n in range(1, count + 1)]


def meta(response: str) -> dict:
    return {"role": "meta_agent", "response": response}


# ----- running level 3 ------------------------------------------------------------------------------
def command(tmp_path: Path, entries: list[dict], iters: int, meta_every: int, results: str = "results") -> list:
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return [sys.executable, str(RUN_PY), "--task", "email_validation", "--iters", str(iters),
            "--meta-every", str(meta_every), "--provider", f"scripted:{script}",
            "--results-dir", str(tmp_path / results)]


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_")}
    env.update(extra)
    return env


def run_level3(tmp_path: Path, entries: list[dict], iters: int, meta_every: int, env=None, results="results"):
    process = subprocess.run(command(tmp_path, entries, iters, meta_every, results), capture_output=True,
                             text=True, env=env or environment(), cwd=REPO, timeout=300)
    return process, tmp_path / results / "email_validation"


def generation(run_dir: Path, number: int) -> dict:
    return json.loads((run_dir / "generations" / f"gen_{number:03d}" / "meta.json").read_text())


def calls(run_dir: Path, role: str) -> list[dict]:
    entries = [json.loads(line) for line in (run_dir / "llm_calls.jsonl").read_text().splitlines()]
    return [entry for entry in entries if entry["role"] == role]


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "experiment.json").read_text())


def assert_seed_untouched():
    assert {p.name: digest(p) for p in sorted(SEED_DIR.iterdir()) if p.is_file()} == SEED_DIGESTS
    assert digest(BENCHMARK) == BENCHMARK_DIGEST


# ----- tests ---------------------------------------------------------------------------------------
def test_valid_rewrite_becomes_a_generation_that_the_next_iterations_use(tmp_path):
    process, run_dir = run_level3(tmp_path, task_replies(4) + [meta(marker_rewrite("GEN1-MARKER"))],
                                  iters=4, meta_every=2)
    assert process.returncode == 0, process.stderr

    gen1 = generation(run_dir, 1)
    assert (gen1["status"], gen1["parent"], gen1["validation"]["ok"]) == ("valid", 0, True)
    assert gen1["reason"] == "mark GEN1-MARKER" and gen1["created_before_iteration"] == 3
    assert "gen_000" in gen1["selected_because"]
    assert [r["iteration"] for r in gen1["inner_results"]] == [3, 4] and gen1["score"] is not None
    assert "+INSTRUCTION = \"GEN1-MARKER" in (run_dir / "generations" / "gen_001" / "diff.patch").read_text()
    assert "GEN1-MARKER" in (run_dir / "generations" / "gen_001" / "task_agent.py").read_text()
    assert "GEN1-MARKER" in (run_dir / "agent_code" / "task_agent.py").read_text()
    assert "GEN1-MARKER" not in (run_dir / "generations" / "gen_000" / "task_agent.py").read_text()
    assert [g["generation"] for g in json.loads((run_dir / "lineage.json").read_text())] == [0, 1]

    # the live code is what ran: the task agent's prompts change exactly from the iteration after the rewrite
    assert ["GEN1-MARKER" in c["prompt"] for c in calls(run_dir, "task_agent")] == [False, False, True, True]
    assert [i["generation"] for i in record(run_dir)["iterations"]] == [0, 0, 1, 1]
    assert record(run_dir)["iterations"][2]["rewrite"]["status"] == "valid"

    # the meta-agent was given the evaluation results so far and the remaining budget
    first_iteration = record(run_dir)["iterations"][0]["metric"]
    meta_prompt = calls(run_dir, "meta_agent")[0]["prompt"]
    assert f"iteration 1: accuracy {first_iteration:g}, kept" in meta_prompt
    assert "Budget left: 2 iterations" in meta_prompt
    assert_seed_untouched()


def test_rewrite_that_passes_validation_but_fails_when_run_is_reverted_at_once(tmp_path):
    line = '    reply = sandbox_host.call("llm", "task_agent", build_prompt(context), None, MAX_TOKENS)'
    broken = "Reason: break it\n" + edit(line, "    raise RuntimeError('broken at run time')\n" + line)
    process, run_dir = run_level3(tmp_path, task_replies(3) + [meta(broken)], iters=4, meta_every=2)
    assert process.returncode == 0, process.stderr
    gen1 = generation(run_dir, 1)
    assert gen1["status"] == "failed" and gen1["validation"]["stage"] == "run"
    assert "broken at run time" in gen1["validation"]["reason"]
    statuses = [(i["generation"], i["status"]) for i in record(run_dir)["iterations"]]
    # iteration 3 runs the broken gen_001 and fails; iteration 4 is back on gen_000 and works again
    assert statuses[2] == (1, "rejected:agent_exception") and statuses[3][0] == 0 and statuses[3][1] == "ok"
    assert "raise RuntimeError" not in (run_dir / "agent_code" / "task_agent.py").read_text()
    assert_seed_untouched()


def test_invalid_rewrites_are_reverted_and_their_reason_recorded_and_shown(tmp_path):
    rewrites = [
        "Reason: syntax\n" + edit("def propose(context):", "def propose(context:"),
        "Reason: raise\n" + edit("", 'raise RuntimeError("boom at import")'),
        "Reason: hang\n" + edit("", "import time\ntime.sleep(600)"),
        "Reason: rename\n" + edit("def propose(context):", "def propose_change(context):"),
    ]
    process, run_dir = run_level3(tmp_path, task_replies(5) + [meta(r) for r in rewrites], iters=5, meta_every=1)
    assert process.returncode == 0, process.stderr

    expected = [("compile", "SyntaxError"), ("import", "boom at import"), ("import", "timeout"),
                ("signature", "`propose` is missing")]
    for number, (stage, words) in enumerate(expected, start=1):
        meta_data = generation(run_dir, number)
        assert (meta_data["status"], meta_data["validation"]["stage"]) == ("invalid", stage), meta_data
        assert words in meta_data["validation"]["reason"]
        assert meta_data["parent"] == 0 and meta_data["inner_results"] == []
    # every inner iteration ran the seed, and the live copy is the seed again
    assert [i["generation"] for i in record(run_dir)["iterations"]] == [0] * 5
    assert (run_dir / "agent_code" / "task_agent.py").read_text() == (SEED_DIR / "task_agent.py").read_text()
    assert len(generation(run_dir, 0)["inner_results"]) == 5
    # each rejection reason reaches the meta-agent at the next rewrite
    prompts = [c["prompt"] for c in calls(run_dir, "meta_agent")]
    assert "rejected" not in prompts[0].split("Current task_agent.py")[0]
    for number, prompt in enumerate(prompts[1:], start=1):
        assert f"Your last rewrite was rejected: gen_{number:03d} was invalid at stage {expected[number - 1][0]}" \
            in prompt
    assert_seed_untouched()


def test_rewrites_naming_anything_but_the_agent_files_are_refused_and_nothing_is_written(tmp_path):
    run_dir = tmp_path / "results" / "email_validation"
    targets = ["../../tasks/email_validation/benchmark.py", str(BENCHMARK), "checkpoint-000001.json",
               "../experiment.json", "task_agent.py"]
    hostile_meta = ("Reason: take over\nFILE: meta_agent.py\n" + edit("", "def rewrite(context):\n"
                    f"    files = {{name: 'HACKED = 1' for name in {targets!r}}}\n"
                    "    return {'files': files, 'reason': 'take over the benchmark'}"))
    rewrites = [
        "Reason: through the seed\nFILE: ../../tasks/email_validation/benchmark.py\n" + edit("", "HACKED = 1"),
        hostile_meta,                     # a valid self-rewrite of meta_agent.py ...
        "never used: the rewritten meta-agent makes no LLM call",
    ]
    process, run_dir = run_level3(tmp_path, task_replies(4) + [meta(r) for r in rewrites], iters=4, meta_every=1)
    assert process.returncode == 0, process.stderr

    through_seed, self_rewrite, hostile = generation(run_dir, 1), generation(run_dir, 2), generation(run_dir, 3)
    assert (through_seed["status"], through_seed["validation"]["stage"]) == ("refused", "paths")
    assert through_seed["refused_files"] == ["../../tasks/email_validation/benchmark.py"]
    assert self_rewrite["status"] == "valid" and "def rewrite(context):\n    files" in \
        (run_dir / "generations" / "gen_002" / "meta_agent.py").read_text()
    assert hostile["parent"] == 2, hostile["selected_because"]      # ... whose own rewrite is then refused
    assert (hostile["status"], hostile["validation"]["stage"]) == ("refused", "paths")
    assert sorted(hostile["refused_files"]) == sorted(t for t in targets if t != "task_agent.py")
    assert hostile["reason"] == "take over the benchmark"
    assert sorted(p.name for p in (run_dir / "generations" / "gen_003").iterdir()) == ["diff.patch", "meta.json"]
    # nothing of a refused rewrite was written anywhere, not even its allowed file
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_text(errors="replace").strip() == "HACKED = 1"]
    assert written == []
    assert (run_dir / "agent_code" / "task_agent.py").read_text() == (SEED_DIR / "task_agent.py").read_text()
    assert record(run_dir)["status"] == "complete" and len(record(run_dir)["iterations"]) == 4
    assert_seed_untouched()


@pytest.mark.skipif(not (isolation().bubblewrap or isolation().drop_privileges),
                    reason="without bubblewrap or a privilege drop the worker could read its parent's /proc entry")
def test_agent_code_cannot_read_a_canary_secret_or_write_outside_its_sandbox(tmp_path):
    run_dir = tmp_path / "results" / "email_validation"
    planted = run_dir / "planted.txt"
    spy = f'''
def propose(context):
    import os
    found = [repr(sorted(os.environ.items()))]
    for path in ["/proc/self/environ", "/proc/%d/environ" % os.getppid(), "/proc/1/environ",
                 {str(REPO / ".env")!r}, {str(run_dir / "llm_calls.jsonl")!r}]:
        try:
            found.append(open(path, errors="replace").read())
        except OSError as error:
            found.append(type(error).__name__)
    for path in [{str(BENCHMARK)!r}, {str(planted)!r}]:
        try:
            open(path, "a").write("HACKED = 1")
            found.append("wrote " + path)
        except OSError as error:
            found.append(type(error).__name__)
    report = "EXFIL-REPORT " + " | ".join(found)
    sandbox_host.call("llm", "task_agent", report)
    return {solution(2)!r}.replace("def is_valid", "# " + report.replace(chr(10), " ")[:3000] + chr(10) + "def is_valid")
'''
    entries = task_replies(1) + [meta("Reason: spy\n" + edit("", spy)),
                                 {"role": "task_agent", "response": "ignored"}]
    env = environment(GEMINI_API_KEY=CANARY, OPENAI_API_KEY=CANARY, SIA_TEST_CANARY=CANARY)
    process, run_dir = run_level3(tmp_path, entries, iters=2, meta_every=1, env=env)
    assert process.returncode == 0, process.stderr
    assert generation(run_dir, 1)["status"] == "valid"

    reports = [c["prompt"] for c in calls(run_dir, "task_agent") if c["prompt"].startswith("EXFIL-REPORT")]
    assert len(reports) == 1 and "PATH" in reports[0]            # the spy ran, inside the sandbox
    assert "wrote" not in reports[0]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(errors="replace"), path
    assert not planted.exists()
    assert_seed_untouched()


def test_run_killed_mid_generation_resumes_to_the_same_records(tmp_path):
    entries = task_replies(6) + [meta(marker_rewrite("GEN1-MARKER")),
                                 meta(marker_rewrite("GEN2-MARKER", 'INSTRUCTION = "GEN1-MARKER Improve the score '
                                                                    'with one change."'))]
    (tmp_path / "a").mkdir()
    uninterrupted, straight = run_level3(tmp_path / "a", entries, iters=6, meta_every=2)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    resumed = tmp_path / "b" / "results" / "email_validation"
    (tmp_path / "b").mkdir()
    arguments = command(tmp_path / "b", entries, iters=6, meta_every=2)
    for landmark in (resumed / "generations" / "gen_001" / "meta.json", resumed / "candidates" / "iter-0005.json"):
        process = subprocess.Popen(arguments, env=environment(), cwd=REPO, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not landmark.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, f"the run ended before {landmark.name}: {process.stderr.read()}"
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        process.stderr.close()
    final = subprocess.run(arguments, env=environment(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert "resuming at iteration" in final.stderr

    def comparable(run_dir: Path) -> dict:
        experiment = record(run_dir)
        files = {str(p.relative_to(run_dir)): p.read_text() for p in sorted(run_dir.rglob("*"))
                 if p.is_file() and p.parts[len(run_dir.parts)] in ("generations", "agent_code", "solutions")}
        return {"iterations": [{k: v for k, v in i.items() if k not in TIMING_FIELDS}
                               for i in experiment["iterations"]],
                "usage": {k: experiment["llm_usage"][k] for k in ("calls", "tokens_in", "tokens_out")},
                "best": experiment["best_metric"], "status": experiment["status"],
                "lineage": (run_dir / "lineage.json").read_text(), "files": files}

    expected = comparable(straight)
    assert [g["status"] for g in json.loads(expected["lineage"])] == ["seed", "valid", "valid"]
    assert comparable(resumed) == expected
    assert_seed_untouched()


def test_budget_caps_the_agents_calls_and_stops_cleanly(tmp_path):
    arguments = command(tmp_path, task_replies(4) + [meta(marker_rewrite("M1"))], iters=4, meta_every=1)
    process = subprocess.run(arguments + ["--max-calls", "3"], capture_output=True, text=True, env=environment(),
                             cwd=REPO, timeout=300)
    run_dir = tmp_path / "results" / "email_validation"
    assert process.returncode == 3, process.stderr
    experiment = record(run_dir)
    assert experiment["status"] == "budget_exhausted"
    assert experiment["llm_usage"]["calls"] == 3                     # task, meta, task: every agent call counted
    assert experiment["llm_usage"]["by_role"]["meta_agent"]["calls"] == 1
    assert [i["llm_calls"] for i in experiment["iterations"]] == [1, 2]


def test_one_agent_step_may_make_only_a_few_calls(tmp_path):
    sys.path.insert(0, str(REPO))
    from tasks.harness import sibling
    from tasks.llm import make_client
    from tasks.llm.broker import BrokerRefusal
    llm = sibling(str(RUN_PY), "llm")
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps({"role": "task_agent", "response": f"reply {n}"}) + "\n" for n in range(9)))
    session = llm.BrokerSession(make_client(f"scripted:{script}"), llm.TASK_AGENT_ROLE)
    call = session.host_functions()["llm"]
    assert [call("task_agent", "hi")["text"] for _ in range(llm.CALLS_PER_STEP)] == \
        [f"reply {n}" for n in range(llm.CALLS_PER_STEP)]
    with pytest.raises(BrokerRefusal, match="at most"):
        call("task_agent", "one more")
    with pytest.raises(BrokerRefusal, match="role must be one of"):
        llm.BrokerSession(session.client, llm.TASK_AGENT_ROLE).host_functions()["llm"]("meta_agent", "hi")
    assert session.client.usage()["calls"] == llm.CALLS_PER_STEP


def test_meta_every_must_be_a_positive_number_of_iterations(tmp_path):
    process = subprocess.run(command(tmp_path, task_replies(1), iters=1, meta_every=0), capture_output=True,
                             text=True, env=environment(), cwd=REPO, timeout=60)
    assert process.returncode == 2
    assert "--meta-every: must be a whole number of iterations, 1 or more" in process.stderr
