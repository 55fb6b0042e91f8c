"""run_all.py end to end on the scripted provider, and analyze_results.py on fixture records."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import analyze_results
import run_all

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_VALIDATOR = (REPO_ROOT / "tasks" / "email_validation" / "reference.py").read_text()
INITIAL_VALIDATOR = (REPO_ROOT / "tasks" / "email_validation" / "initial_solution.py").read_text()
STRAIGHT_TO_FOOD = (REPO_ROOT / "tasks" / "snake" / "initial_solution.py").read_text()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_script(path: Path, replies: list[str]) -> Path:
    path.write_text("".join(json.dumps({"role": "researcher", "response": r}) + "\n" for r in replies))
    return path


def run_all_process(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "run_all.py"), *options], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def test_run_all_runs_skips_and_reports_failures(tmp_path):
    # One file that serves both tasks: the reference validator (a perfect score, so that run stops early) plus
    # the snake baseline; the second reply has no code and is rejected.
    whole_file = f"```python\n{REFERENCE_VALIDATOR}\n\n{STRAIGHT_TO_FOOD}\n```"
    script = write_script(tmp_path / "script.jsonl", [whole_file, "I have no idea."])
    common = ["--levels", "autoresearch", "--provider", f"scripted:{script}", "--results-root", str(tmp_path)]

    first = run_all_process("--tasks", "email_validation,snake", "--iters", "2", *common)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[1/2] L1 AutoResearch / email_validation: running" in first.stdout
    assert "iter   1" in first.stdout                      # the experiment's own progress reaches the console
    email = json.loads((tmp_path / "autoresearch/results/email_validation/experiment.json").read_text())
    assert email["status"] == "complete" and email["best_metric"] == 100.0
    report = (tmp_path / "experiment-results.md").read_text()
    assert "## email_validation" in report and "## snake" in report
    assert "| L1 AutoResearch | 0 | scripted | script.jsonl | 56.19 | 100 | 1 |" in report
    assert "--iters 2" in report                             # how the results were produced
    for task in ("email_validation", "snake"):
        for plot in (f"{task}-score-by-iteration.png", f"{task}-score-by-cost.png"):
            assert (tmp_path / "results-plots" / plot).read_bytes().startswith(PNG_MAGIC)
            assert f"](results-plots/{plot})" in report
    assert (tmp_path / "autoresearch/results/logs/snake.log").read_text().count("iter ") >= 2

    second = run_all_process("--tasks", "email_validation,snake", "--iters", "2", *common)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("skipped, already complete") == 2
    assert ": running" not in second.stdout
    assert "skipped (already complete): 2" in second.stdout

    # More iterations than the script has replies: snake resumes at iteration 3 and fails; email_validation
    # is already perfect, so it is skipped whatever --iters says.
    third = run_all_process("--tasks", "email_validation,snake", "--iters", "3", *common)
    assert third.returncode == 1, third.stdout + third.stderr
    summary = third.stdout.split("\nSummary\n", 1)[1]
    assert "L1 AutoResearch / email_validation" in summary.split("FAILED")[0]
    failed_part = summary.split("FAILED: 1", 1)[1]
    assert "L1 AutoResearch / snake: exit code 2" in failed_part
    assert "exhausted" in failed_part                        # the last lines of the experiment's output
    assert "resuming at iteration 3" in (tmp_path / "autoresearch/results/logs/snake.log").read_text()


def test_run_all_rejects_unknown_levels_and_tasks(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_all.parse_args(["--levels", "no-such-level", "--results-root", str(tmp_path)])
    assert "unknown no-such-level" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_all.parse_args(["--tasks", "chess", "--results-root", str(tmp_path)])
    assert "available tasks" in capsys.readouterr().err


def test_preset_gives_each_level_its_iterations_and_only_flags_it_takes(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "supported_flags", lambda level: {"--meta-every"} if level == "hyperagent" else set())
    args = run_all.parse_args(["--preset", "quick", "--levels", "autoresearch", "--tasks", "snake",
                               "--results-root", str(tmp_path)])
    args.level_list = ["autoresearch", "hyperagent", "arena-loop"]     # plan() does not need the folders
    by_level = {e.level: e for e in run_all.plan(args)}
    assert by_level["autoresearch"].iters == run_all.PRESETS["quick"]["iters"]["autoresearch"]
    assert by_level["hyperagent"].flags == ["--meta-every", run_all.PRESETS["quick"]["flags"]["hyperagent"]["--meta-every"]]
    assert by_level["arena-loop"].flags == []                          # takes none of its preset's flags
    args.iters, args.seeds = 7, 2
    plan = run_all.plan(args)
    assert {e.iters for e in plan} == {7} and sorted({e.seed for e in plan}) == [0, 1]


def test_analysis_without_results_says_what_to_run(tmp_path, capsys):
    assert analyze_results.main(["--results-root", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "No experiment records" in message and "python run_all.py --preset quick" in message
    assert not (tmp_path / "experiment-results.md").exists()


def test_confidence_interval_known_values():
    mean, low, high = analyze_results.confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)                         # t(4) = 2.776
    assert mean == 3.0 and low == pytest.approx(3.0 - half) and high == pytest.approx(3.0 + half)
    assert analyze_results.confidence_interval([10.0, 12.0])[2] == pytest.approx(11.0 + 12.706)
    assert analyze_results.t_critical_95(45) == 2.021                   # between table rows: the wider one
    with pytest.raises(ValueError):
        analyze_results.t_critical_95(0)


# ----- fixture records -------------------------------------------------------------------------------
def write_record(root: Path, level: str, task: str, seed: int, best: float, initial: float = 50.0,
                 cost: float = 0.0, solution: str | None = None, folder: str = "results") -> Path:
    directory = root / level / folder / (task if seed == 0 else f"{task}-seed{seed}")
    (directory / "solutions").mkdir(parents=True)
    iterations = [{"iteration": 1, "metric": best, "accepted": True, "status": "ok", "best_metric": best,
                   "llm_calls": 1, "tokens_in": 100, "tokens_out": 20, "cost_usd": cost}]
    record = {"record_version": 1, "level": level, "task": task, "seed": seed, "provider": "openai",
              "model": "gpt-test", "metric_name": "accuracy", "higher_is_better": True, "status": "complete",
              "iters_requested": 1, "initial_metric": initial, "best_metric": best, "iterations": iterations,
              "llm_usage": {"calls": 1, "tokens_in": 100, "tokens_out": 20, "cost_usd": cost, "latency_s": 1.0},
              "wall_time_s": 3.5, "started_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:01:00+00:00"}
    (directory / "experiment.json").write_text(json.dumps(record))
    if solution is not None:
        (directory / "solutions" / "best.py").write_text(solution)
    return directory


def test_seed_statistics_in_the_report(tmp_path):
    for seed, best in enumerate([50.0, 60.0, 70.0]):
        write_record(tmp_path, "feedback-loop", "email_validation", seed, best, initial=40.0, cost=0.01)
    write_record(tmp_path, "autoresearch", "email_validation", 0, 55.0)
    assert analyze_results.main(["--results-root", str(tmp_path), "--note", "Made by the fixture."]) == 0
    report = (tmp_path / "experiment-results.md").read_text()
    half = 4.303 * 10.0 / math.sqrt(3)                                    # stdev 10, t(2) = 4.303
    assert f"| L2 Feedback | openai | gpt-test | 3 | 60 [{60 - half:.4g}, {60 + half:.4g}] " \
           f"| 20 [{20 - half:.4g}, {20 + half:.4g}] | 0.0100 |" in report
    assert "Made by the fixture." in report
    # the table lists levels in their known order, whatever order the folders come in
    assert report.index("| L1 AutoResearch | 0 |") < report.index("| L2 Feedback | 0 |")
    assert "| L1 AutoResearch | openai" not in report                  # one seed: no interval row


def test_cross_level_robustness_table_and_cache(tmp_path, monkeypatch):
    task = "email_validation"
    write_record(tmp_path, "autoresearch", task, 0, 56.19, solution=INITIAL_VALIDATOR, cost=0.002)
    write_record(tmp_path, "arena-loop", task, 0, 100.0, solution=REFERENCE_VALIDATOR, cost=0.05)
    write_record(tmp_path, "arena-loop", task, 0, 90.0, folder="results-single")
    suite = {"cases": [{"address": "a..b@example.com", "expected": False},      # the naive validator says True
                       {"address": "user@example.com", "expected": True},
                       {"address": "user@localhost", "expected": False}]}
    (tmp_path / "arena-loop/results" / task / "adversarial_suite.json").write_text(json.dumps(suite))

    assert analyze_results.main(["--results-root", str(tmp_path)]) == 0
    report = (tmp_path / "experiment-results.md").read_text()
    assert ("| L1 AutoResearch | openai | gpt-test | 56.19 | 56.19 (59/105 passed) | 66.67 (2/3 passed) "
            "| 0.0020 | ok |") in report
    assert "| L4 Arena | openai | gpt-test | 100 | 100 (105/105 passed) | 100 (3/3 passed) | 0.0500 | ok |" in report
    assert "The arena's own best solution scores 100 (105/105 passed) on the original tests" in report
    assert "| L4 Arena (single) | 0 | openai | gpt-test | 50 | 90 |" in report
    assert "| L4 Arena (single) | openai | gpt-test | 90 | — | — | 0.0000 | no solutions/best.py |" in report

    # the scores are cached by file hash: a second analysis scores nothing again
    def no_scoring(*args, **kwargs):
        raise AssertionError("run_solution called although every score was cached")
    monkeypatch.setattr("tasks.task_runner.run_solution", no_scoring)
    assert analyze_results.main(["--results-root", str(tmp_path)]) == 0
    assert "66.67 (2/3 passed)" in (tmp_path / "experiment-results.md").read_text()


def test_report_counts_the_arenas_proposed_and_rejected_cases(tmp_path):
    directory = write_record(tmp_path, "arena-loop", "email_validation", 0, 60.0)
    record = json.loads((directory / "experiment.json").read_text())
    record["iterations"] = [
        dict(record["iterations"][0], iteration=1, cases_accepted=2, cases_rejected=3,
             rejections_by_stage={"duplicate": 2, "referee": 1}),
        dict(record["iterations"][0], iteration=2, cases_accepted=1, cases_rejected=1,
             rejections_by_stage={"referee": 1})]
    (directory / "experiment.json").write_text(json.dumps(record))
    assert analyze_results.main(["--results-root", str(tmp_path)]) == 0
    report = (tmp_path / "experiment-results.md").read_text()
    assert "L4 Arena test cases: 7 proposed, 3 accepted into the suite, 4 rejected (by check: duplicate 2, referee 2)" in report


def test_a_finished_run_is_not_skipped_for_another_model_and_the_conflict_is_reported(tmp_path):
    whole_file = f"```python\n{REFERENCE_VALIDATOR}\n```"
    first = write_script(tmp_path / "first.jsonl", [whole_file])
    other = write_script(tmp_path / "other.jsonl", [whole_file])
    common = ["--levels", "autoresearch", "--tasks", "email_validation", "--iters", "1", "--results-root", str(tmp_path)]
    assert run_all_process(*common, "--provider", f"scripted:{first}").returncode == 0
    again = run_all_process(*common, "--provider", f"scripted:{other}")
    assert again.returncode == 1 and "skipped, already complete" not in again.stdout
    assert "holds a run made with scripted:first.jsonl" in again.stdout and "--fresh" in again.stdout
