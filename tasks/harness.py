"""The experiment harness every level shares: command line, run directory, resume, progress, experiment record.

A level supplies a `Loop` (see below): what one iteration does. The harness does the rest the same way for
every level, so `run_all.py` and `analyze_results.py` need no per-level code:

    <level>/results/<task>/            (seed 0; other seeds: <task>-seed<N>/)
        checkpoint-*.json              the resumable state (tasks/checkpoint.py)
        experiment.json                the machine-readable record, rewritten after every iteration
        solutions/best.py              the best solution so far
        candidates/iter-0007.py|.json  every candidate and its run result
        llm_calls.jsonl                every LLM call (a cassette: replay with --provider replay:PATH)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from tasks.checkpoint import RunDirectory, RunLockedError, CheckpointError, atomic_write_text
from tasks.code_edits import CandidateRejected, candidate_from_reply
from tasks.llm import BudgetExceeded, LLMClient, LLMError, make_client
from tasks.task_runner import REPO_ROOT, RunResult, Task, TaskError, load_task, run_solution, write_solution

RECORD_VERSION = 1


class RunConflict(ValueError):
    """The command asks to continue a run with another provider or model than the one it was made with."""


# ----- the contract a level implements -------------------------------------------------------------
@dataclass
class Iteration:
    """What one iteration reports; the harness adds accounting and writes it to the record."""
    metric: float | None
    accepted: bool
    status: str                      # the run's status, or "rejected:<kind>" when no candidate reached the benchmark
    note: str = ""
    benchmark_s: float = 0.0
    extra: dict = field(default_factory=dict)


class Loop(Protocol):
    level: str

    def start(self, run: "Run") -> dict:
        """Level-specific state for a fresh run (JSON data)."""

    def iterate(self, run: "Run", state: dict, index: int) -> Iteration:
        """One iteration; mutate `state` (it is checkpointed after each call)."""


# ----- command line --------------------------------------------------------------------------------
def build_parser(description: str, default_iters: int = 10) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--task", default="snake", help="task folder under tasks/ (or a path to one); default snake")
    parser.add_argument("--iters", type=int, default=default_iters,
                        help=f"iterations to run in all (default {default_iters}); raising it continues a finished run")
    parser.add_argument("--provider", default=None,
                        help="gemini, openai, local, scripted:PATH or replay:PATH (default: LLM_PROVIDER, "
                             "else the first configured: GEMINI_API_KEY, OPENAI_API_KEY/OPENAI_BASE_URL, local)")
    parser.add_argument("--model", default=None, help="model name for the provider (default: LLM_MODEL or the provider's)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling and any randomness (default 0)")
    parser.add_argument("--fresh", action="store_true",
                        help="start this level/task/seed over (other levels', tasks' and seeds' results are kept)")
    parser.add_argument("--max-cost", type=float, default=None, help="stop cleanly once the run has spent this many USD")
    parser.add_argument("--max-calls", type=int, default=None, help="stop cleanly after this many LLM calls")
    parser.add_argument("--results-dir", default=None, help="where results go (default <level>/results)")
    return parser


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat the run with seeds seed, seed+1, ...; each seed gets its own record")


def run_directory_for(results_dir: Path, task: str, seed: int) -> Path:
    return results_dir / (task if seed == 0 else f"{task}-seed{seed}")


# ----- one run -------------------------------------------------------------------------------------
class Run:
    """Everything an iteration needs: the task, the LLM client, the run directory, helpers to score code."""

    def __init__(self, loop: Loop, task: Task, client: LLMClient, directory: Path, args: argparse.Namespace):
        self.loop, self.task, self.client, self.directory, self.args = loop, task, client, directory, args
        self.best_path = directory / "solutions" / "best.py"
        self.state: dict = {}
        self._judge = None
        self._checkpoints: RunDirectory | None = None
        self._usage_before_iteration: dict | None = None

    @property
    def best_code(self) -> str:
        return self.state["best_code"]

    @property
    def best_metric(self) -> float:
        return self.state["best_metric"]

    def accept(self, code: str, metric: float) -> None:
        """The new best: kept in the state (checkpointed with the iteration) and in solutions/best.py."""
        self.state["best_code"], self.state["best_metric"] = code, metric
        write_solution(code, self.best_path)

    def propose(self, reply, current_code: str) -> str:
        """The candidate an LLM reply stands for; raises CandidateRejected before any benchmark time is spent."""
        return candidate_from_reply(reply.text, current_code, truncated=reply.truncated,
                                    required_names=list(self.task.required_functions))

    def evaluate(self, code: str, index: int, extra_tests: tuple = ()) -> RunResult:
        path = write_solution(code, self.directory / "candidates" / f"iter-{index:04d}.py")
        result = run_solution(self.task, path, extra_tests=extra_tests, judge=self.judge())
        atomic_write_text(path.with_suffix(".json"), json.dumps(result.to_dict(), indent=1), durable=False)
        return result

    def checkpoint(self) -> None:
        """Save the state now, in the middle of an iteration (level 3 saves after each generation). A resumed run
        calls iterate() again for the same index: the level state must say which part of it is already done.
        The iteration's LLM accounting still starts where the interrupted iteration started."""
        self.state["usage_before_iteration"] = self._usage_before_iteration
        self.state["llm"] = self.client.state_dict()
        self._checkpoints.save(self.state)

    def judge(self):
        """One judge per run, so its cache makes re-scoring the same answers free."""
        if not self.task.is_judged:
            return None
        if self._judge is None:
            from tasks.llm.judge import make_judge
            self._judge = make_judge(self.client)
        return self._judge



def run_level(loop: Loop, args: argparse.Namespace) -> dict:
    """Open or resume one run of `loop` and drive it to --iters; returns the experiment record."""
    level_dir = REPO_ROOT / loop.level
    results_dir = Path(args.results_dir) if args.results_dir else level_dir / "results"
    task = load_task(args.task)
    directory = run_directory_for(results_dir, task.name, args.seed)
    if args.fresh and directory.exists():
        with RunDirectory(directory):  # refuse to wipe a run another process is using
            pass
        shutil.rmtree(directory)
    with RunDirectory(directory) as checkpoints:
        client = make_client(args.provider, args.model, record_to=directory / "llm_calls.jsonl",
                             max_cost=args.max_cost, max_calls=args.max_calls, seed=args.seed)
        run = Run(loop, task, client, directory, args)
        run._checkpoints = checkpoints
        saved = checkpoints.load()
        if saved is None:
            state = _fresh_state(run, args)
            checkpoints.save(state)
        else:
            state = saved
            recorded = state["llm"].get("describe")
            if recorded and recorded != client.describe():
                raise RunConflict(f"{directory} holds a run made with {recorded}, and this command asks for "
                                  f"{client.describe()}; one run mixing two models would not compare honestly. "
                                  "Use --fresh to replace it, or --results-dir DIR to keep both.")
            client.load_state_dict(state["llm"])
            _trim_cassette(directory / "llm_calls.jsonl", state["llm"]["usage"]["calls"])
            write_solution(state["best_code"], run.best_path)  # best.py may be newer than the checkpoint
        run.state = state
        _write_record(run, state)
        return _drive(run, state, checkpoints, args)


def _trim_cassette(path: Path, calls: int) -> None:
    """Drop calls recorded after the last checkpoint: the resumed run makes them again, so replay stays exact."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if len(lines) > calls:
            atomic_write_text(path, "".join(lines[:calls]))


def _fresh_state(run: Run, args) -> dict:
    code = run.task.initial_solution.read_text()
    baseline = run.evaluate(code, 0)
    if not baseline.ok:
        raise TaskError(f"the initial solution of task {run.task.name} does not score ({baseline.status}: "
                        f"{baseline.message}); fix tasks/{run.task.path.name}/initial_solution.py first")
    write_solution(code, run.best_path)
    print(f"[{run.loop.level}/{run.task.name}] initial {run.task.metric_name} = {baseline.metric:g} "
          f"({baseline.duration_s:.1f} s)", file=sys.stderr)
    return {"record_version": RECORD_VERSION, "code_version": code_version(), "next_iteration": 1, "status": "running",
            "initial_metric": baseline.metric, "best_metric": baseline.metric, "best_code": code,
            "iterations": [], "wall_time_s": 0.0, "started_at": _now(), "llm": run.client.state_dict(),
            "level_state": run.loop.start(run)}


def _drive(run: Run, state: dict, checkpoints: RunDirectory, args) -> dict:
    label = f"{run.loop.level}/{run.task.name}" + (f" seed {args.seed}" if args.seed else "")
    done = state["next_iteration"] > args.iters or run.task.is_perfect(state["best_metric"])
    if done:
        print(f"[{label}] run complete: {len(state['iterations'])} iterations, best {run.task.metric_name} = "
              f"{state['best_metric']:g} (raise --iters to continue, or --fresh to start over)", file=sys.stderr)
        state["status"] = "complete"
        _write_record(run, state)
        return _record(run, state)
    if state["next_iteration"] > 1:
        print(f"[{label}] resuming at iteration {state['next_iteration']}", file=sys.stderr)
    state["status"] = "running"
    progress = tqdm(total=args.iters, initial=state["next_iteration"] - 1, desc=label, unit="iter",
                    file=sys.stderr, dynamic_ncols=True, disable=None)  # no bar in logs: the lines say it all
    progress.set_postfix_str(f"best {state['best_metric']:g}")
    segment_started = time.monotonic()
    try:
        while state["next_iteration"] <= args.iters and not run.task.is_perfect(state["best_metric"]):
            index = state["next_iteration"]
            # an iteration resumed after a mid-iteration checkpoint (Run.checkpoint) is accounted from its true start
            before = state.pop("usage_before_iteration", None) or run.client.usage()
            run._usage_before_iteration = before
            iteration = run.loop.iterate(run, state["level_state"], index)
            state.pop("usage_before_iteration", None)
            entry = _account(run, state, index, iteration, before)
            state["iterations"].append(entry)
            state["next_iteration"] = index + 1
            state["wall_time_s"] += time.monotonic() - segment_started
            segment_started = time.monotonic()
            state["llm"] = run.client.state_dict()
            checkpoints.save(state)
            _write_record(run, state)
            progress.update(1)
            progress.set_postfix_str(f"best {state['best_metric']:g}")
            tqdm.write(_line(run, entry), file=sys.stderr)
        state["status"] = "complete"
    except BudgetExceeded as stop:
        # Drop what the unfinished iteration changed in memory (a level may have recorded half an attempt):
        # back to the last checkpoint, so a resumed run repeats that iteration whole, exactly once.
        state = checkpoints.load()
        run.state = state
        run.client.load_state_dict(state["llm"])
        state["status"] = "budget_exhausted"
        tqdm.write(f"[{label}] stopped cleanly at iteration {state['next_iteration']}: {stop}. "
                   "Raise --max-cost/--max-calls and rerun to continue.", file=sys.stderr)
    except KeyboardInterrupt:
        state["status"] = "interrupted"
        tqdm.write(f"[{label}] interrupted; the last finished iteration is saved. Rerun the same command to resume.",
                   file=sys.stderr)
        raise
    finally:
        progress.close()
        # the state on disk is the last checkpoint; only the status and record change here
        _write_record(run, state)
    if state["status"] == "complete":
        checkpoints.save(state)
    return _record(run, state)


def _account(run: Run, state: dict, index: int, iteration: Iteration, before: dict) -> dict:
    after = run.client.usage()
    return {"iteration": index, "metric": iteration.metric, "accepted": iteration.accepted,
            "status": iteration.status, "best_metric": state["best_metric"], "note": iteration.note[:300],
            "llm_calls": after["calls"] - before["calls"],
            "tokens_in": after["tokens_in"] - before["tokens_in"],
            "tokens_out": after["tokens_out"] - before["tokens_out"],
            "cost_usd": round(after["cost_usd"] - before["cost_usd"], 6),
            "llm_latency_s": round(after["latency_s"] - before["latency_s"], 3),
            "benchmark_s": round(iteration.benchmark_s, 3), **iteration.extra}


def _line(run: Run, entry: dict) -> str:
    metric = "—" if entry["metric"] is None else f"{entry['metric']:g}"
    verdict = "accepted" if entry["accepted"] else "rejected"
    return (f"  iter {entry['iteration']:>3}  {run.task.metric_name}={metric:<8} {verdict:<8} {entry['status']:<22} "
            f"tokens {entry['tokens_in']}/{entry['tokens_out']}  ${entry['cost_usd']:.4f}  best={entry['best_metric']:g}")


def _record(run: Run, state: dict) -> dict:
    usage = run.client.usage()
    return {"record_version": RECORD_VERSION, "level": run.loop.level, "task": run.task.name,
            "seed": run.args.seed, "provider": run.client.provider.name, "model": run.client.provider.model,
            "code_version": state.get("code_version", "unknown"),
            "metric_name": run.task.metric_name, "higher_is_better": run.task.higher_is_better,
            "status": state["status"], "iters_requested": run.args.iters,
            "initial_metric": state["initial_metric"], "best_metric": state["best_metric"],
            "iterations": state["iterations"], "llm_usage": usage, "wall_time_s": round(state["wall_time_s"], 2),
            "started_at": state["started_at"], "updated_at": _now()}


def _write_record(run: Run, state: dict) -> None:
    atomic_write_text(run.directory / "experiment.json", json.dumps(_record(run, state), indent=1), durable=False)


def code_version() -> str:
    """The commit the run started from (with "-dirty" for uncommitted changes), so a result can be traced."""
    import subprocess
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sibling(level_file: str, name: str):
    """Import `name`.py from a level's folder under a name of its own: every level has an llm.py."""
    import importlib.util
    folder = Path(level_file).resolve().parent
    key = f"{folder.name.replace('-', '_')}.{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


# ----- entry points for run.py and experiment.py ---------------------------------------------------
def main(loop: Loop, description: str, argv=None, experiment: bool = False, default_iters: int = 10,
         add_arguments=None) -> int:
    """`add_arguments(parser)`, if given, adds a level's own flags (read them from `run.args`)."""
    parser = build_parser(description, default_iters)
    if experiment:
        add_experiment_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    seeds = [args.seed + offset for offset in range(getattr(args, "seeds", 1))]
    try:
        for seed in seeds:
            args.seed = seed
            record = run_level(loop, args)
            if record["status"] == "budget_exhausted":
                return 3
    except KeyboardInterrupt:
        return 130
    except (TaskError, LLMError, RunLockedError, CheckpointError, CandidateRejected, RunConflict) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
