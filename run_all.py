"""Run every level x task experiment that exists, then the analysis: `python run_all.py --preset quick` (see --help).

A level takes part when its folder has an experiment.py; a task when tasks/<name>/config.py exists. Every
experiment is one subprocess `python <level>/experiment.py --task T --seed S ...` whose output goes to a log
file beside its results, with its per-iteration lines echoed here under a prefix. A finished experiment
(experiment.json says complete and enough iterations) is skipped; an interrupted one resumes when run again.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))

from tasks.harness import run_directory_for  # noqa: E402
from tasks.task_runner import TaskError, list_tasks, load_task  # noqa: E402

# The known levels, in order, with their display names. A level runs only when its folder has an
# experiment.py; a folder with an experiment.py that is not listed here joins after these, under its own name.
KNOWN_LEVELS = {
    "autoresearch": "L1 AutoResearch",
    "feedback-loop": "L2 Feedback",
    "hyperagent": "L3 HyperAgent",
    "arena-loop": "L4 Arena",
}

# Per-level iterations (for the arena, rounds) and extra flags. The quick preset is sized for the embedded
# 0.5B model on an idle 2-core machine (~10-60 s a call, depending on how long the answer is): about 14 calls
# per task, 3 tasks, ~20 minutes. L1 makes 1 call an iteration; L2 up to 2 (worker, then reviewer after a
# failure); L3 1 per iteration plus a meta-agent rewrite (--meta-every 1: the rewrite comes at iteration 2);
# L4 a code agent and a test agent per round (--code 1 --test 1). The full preset keeps each level's own
# defaults (L4: 4 code and 4 test agents a round, hence fewer rounds). A level flag is passed only when that
# level's experiment.py lists it in its --help.
PRESETS = {
    "quick": {"seeds": 1,
              "iters": {"autoresearch": 4, "feedback-loop": 4, "hyperagent": 4, "arena-loop": 2},
              "default_iters": 2,
              "flags": {"hyperagent": {"--meta-every": "2"}, "arena-loop": {"--code": "1", "--test": "1"}}},
    "full": {"seeds": 3,
             "iters": {"autoresearch": 20, "feedback-loop": 20, "hyperagent": 20, "arena-loop": 10},
             "default_iters": 20,
             "flags": {}},
}
DEFAULT_PRESET = "quick"
EXIT_BUDGET_STOP = 3            # tasks/harness.py: a clean stop at --max-cost/--max-calls
STOP_GRACE_S = 90               # a local-model call cannot be interrupted mid-generation; give it time to end
FAILURE_TAIL_LINES = 6
PROGRESS_BAR = re.compile(r"^\S.*:\s+\d+%\|")  # tqdm's bar: kept in the log, not echoed


def discover_levels() -> list[str]:
    known = [name for name in KNOWN_LEVELS if (REPO_ROOT / name / "experiment.py").is_file()]
    others = sorted(p.parent.name for p in REPO_ROOT.glob("*/experiment.py")
                    if p.parent.name not in KNOWN_LEVELS and not p.parent.name.startswith("."))
    return known + others


def display_name(level: str) -> str:
    return KNOWN_LEVELS.get(level, level)


@dataclass
class Experiment:
    level: str
    task: str
    seed: int
    iters: int
    results_dir: Path
    flags: list[str] = field(default_factory=list)
    outcome: str = "pending"      # ran, skipped, budget, failed, interrupted
    reason: str = ""
    tail: deque = field(default_factory=lambda: deque(maxlen=FAILURE_TAIL_LINES))

    @property
    def label(self) -> str:
        return f"{display_name(self.level)} / {self.task}" + (f" seed {self.seed}" if self.seed else "")

    @property
    def short_label(self) -> str:
        return f"{self.level}/{self.task}" + (f"#{self.seed}" if self.seed else "")

    @property
    def run_dir(self) -> Path:
        return run_directory_for(self.results_dir, self.task, self.seed)

    @property
    def log_path(self) -> Path:
        return self.results_dir / "logs" / f"{self.run_dir.name}.log"


# ----- command line --------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run every level x task experiment (skipping finished ones, resuming interrupted ones), "
                    "then write experiment-results.md with analyze_results.py.")
    parser.add_argument("--levels", help="comma list of level folders (default: every folder with an experiment.py: "
                                         f"{', '.join(discover_levels()) or 'none yet'})")
    parser.add_argument("--tasks", help=f"comma list of tasks (default: all: {', '.join(list_tasks())})")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="quick: a first look on the local model, about 20 minutes on 2 cores; full: the real "
                             f"comparison. Per level: {'; '.join(_describe_preset(n) for n in PRESETS)}. "
                             f"Default {DEFAULT_PRESET}.")
    parser.add_argument("--iters", type=int, help="iterations for every level (overrides the preset)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per level and task (overrides the preset)")
    parser.add_argument("--fresh", action="store_true", help="start the selected experiments over")
    parser.add_argument("--jobs", type=int, default=1,
                        help="experiments run in parallel (default 1: the local model already uses every core)")
    parser.add_argument("--provider", help="passed to every experiment (default: the harness's choice)")
    parser.add_argument("--model", help="passed to every experiment")
    parser.add_argument("--max-cost", type=float, help="USD limit per experiment, passed through")
    parser.add_argument("--max-calls", type=int, help="LLM call limit per experiment, passed through")
    parser.add_argument("--results-root", default=str(REPO_ROOT),
                        help="where <level>/results/ and the analysis go (default: the repository; tests use a "
                             "temporary folder)")
    parser.add_argument("--no-analysis", action="store_true", help="skip analyze_results.py at the end")
    args = parser.parse_args(argv)
    args.results_root = str(Path(args.results_root).resolve())   # children run from the repository root
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.iters is not None and args.iters < 1:
        parser.error("--iters must be at least 1")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    available = discover_levels()
    args.level_list = _choose(parser, "--levels", args.levels, available, "level folders with an experiment.py")
    args.task_list = _choose(parser, "--tasks", args.tasks, list_tasks(), "tasks")
    return args


def _describe_preset(name: str) -> str:
    preset = PRESETS[name]
    levels = ", ".join(f"{display_name(level).split()[0]} {iters}"
                       + "".join(f" {flag} {value}" for flag, value in preset["flags"].get(level, {}).items())
                       for level, iters in preset["iters"].items())
    return f"{name} = {levels} iterations, {preset['seeds']} seed(s)"


def _choose(parser, option: str, value: str | None, available: list[str], what: str) -> list[str]:
    if value is None:
        if not available:
            parser.error(f"no {what} found")
        return available
    chosen = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in available]
    if unknown or not chosen:
        parser.error(f"{option}: unknown {', '.join(unknown) or '(empty list)'}; available {what}: "
                     f"{', '.join(available) or 'none'}")
    return chosen


# ----- planning ------------------------------------------------------------------------------------
def supported_flags(level: str) -> set[str]:
    """The options a level's experiment.py takes, read from its --help (asked once per level)."""
    process = subprocess.run([sys.executable, str(REPO_ROOT / level / "experiment.py"), "--help"],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", process.stdout))


def plan(args) -> list[Experiment]:
    preset = PRESETS[args.preset or DEFAULT_PRESET]
    seeds = args.seeds or preset["seeds"]
    experiments = []
    for level in args.level_list:
        iters = args.iters or preset["iters"].get(level, preset["default_iters"])
        wanted = preset["flags"].get(level, {})
        flags = []
        if wanted:
            known = supported_flags(level)
            for flag, value in wanted.items():
                if flag in known:
                    flags += [flag, value]
                else:
                    print(f"note: {level}/experiment.py takes no {flag}; the preset's {flag} {value} is not passed")
        results_dir = Path(args.results_root) / level / "results"
        for task in args.task_list:
            experiments += [Experiment(level, task, seed, iters, results_dir, flags) for seed in range(seeds)]
    return experiments


def completed(experiment: Experiment) -> dict | None:
    """The record of an experiment that needs no more work at these settings, else None."""
    record = read_record(experiment)
    if not isinstance(record, dict) or record.get("status") != "complete":
        return None
    if len(record.get("iterations") or []) >= experiment.iters or record.get("iters_requested", 0) >= experiment.iters:
        return record
    try:  # a run stops early at a perfect score; asking for more iterations would not change it
        return record if load_task(experiment.task).is_perfect(record.get("best_metric")) else None
    except TaskError:
        return None


def command_for(experiment: Experiment, args) -> list[str]:
    command = [sys.executable, "-u", str(REPO_ROOT / experiment.level / "experiment.py"),
               "--task", experiment.task, "--iters", str(experiment.iters), "--seed", str(experiment.seed),
               "--seeds", "1", "--results-dir", str(experiment.results_dir)]
    for option, value in (("--provider", args.provider), ("--model", args.model),
                          ("--max-cost", args.max_cost), ("--max-calls", args.max_calls)):
        if value is not None:
            command += [option, str(value)]
    if args.fresh:
        command.append("--fresh")
    return command + experiment.flags


# ----- running -------------------------------------------------------------------------------------
class Console:
    """One lock for every line printed, so parallel experiments do not interleave half-lines."""

    def __init__(self):
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)


def _pump(process: subprocess.Popen, experiment: Experiment, console: Console, log) -> None:
    # Text mode turns tqdm's carriage returns into line ends: bar refreshes become lines we can drop.
    for line in process.stdout:
        line = line.rstrip()
        if not line.strip():
            continue
        log.write(line + "\n")
        log.flush()
        if PROGRESS_BAR.match(line):
            continue
        experiment.tail.append(line)
        own_prefix = f"[{experiment.level}/{experiment.task}"   # the harness labels some lines itself
        shown = line.strip()
        if shown.startswith(own_prefix):
            shown = shown.split("] ", 1)[-1]
        console.say(f"  [{experiment.short_label}] {shown}")


def start(experiment: Experiment, args, console: Console):
    experiment.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = experiment.log_path.open("a", encoding="utf-8")
    command = command_for(experiment, args)
    log.write(f"\n$ {shlex.join(command)}\n")
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A session of its own: a terminal Ctrl+C reaches only run_all, which then stops each child in turn.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               text=True, errors="replace", cwd=REPO_ROOT, env=environment, start_new_session=True)
    reader = threading.Thread(target=_pump, args=(process, experiment, console, log), daemon=True)
    reader.start()
    return process, reader, log


def finish(experiment: Experiment, returncode: int) -> None:
    if returncode == 0:
        experiment.outcome = "ran"
    elif returncode == EXIT_BUDGET_STOP:
        experiment.outcome, experiment.reason = "budget", "stopped cleanly at --max-cost/--max-calls"
    else:
        experiment.outcome = "failed"
        experiment.reason = f"exit code {returncode}"


def describe_record(record: dict | None) -> str:
    if not record:
        return ""
    usage = record.get("llm_usage") or {}
    return (f"{record.get('metric_name', 'score')} {record.get('initial_metric'):g} -> {record.get('best_metric'):g} "
            f"in {len(record.get('iterations') or [])} iterations, {usage.get('calls', 0)} LLM calls "
            f"({record.get('provider')}/{record.get('model')})")


def made_with_requested_model(record: dict, args) -> bool:
    """False when --provider/--model ask for something else than the finished run used."""
    provider, _, script = (args.provider or "").partition(":")
    model = args.model or (Path(script).name if script else None)  # scripted:/replay: runs are named by their file
    return (not provider or record.get("provider") == provider) and (not model or record.get("model") == model)


def read_record(experiment: Experiment) -> dict | None:
    try:
        return json.loads((experiment.run_dir / "experiment.json").read_text())
    except (OSError, ValueError):
        return None


def run_experiments(experiments: list[Experiment], args, console: Console) -> bool:
    """Run what is not finished; True when every experiment got to an end (False on Ctrl+C)."""
    total = len(experiments)
    pending = []
    for number, experiment in enumerate(experiments, start=1):
        record = None if args.fresh else completed(experiment)
        if record is not None and not made_with_requested_model(record, args):
            record = None  # not skipped: the experiment itself refuses to mix models and says what to do
        if record is not None:
            experiment.outcome, experiment.reason = "skipped", "already complete: " + describe_record(record)
            console.say(f"[{number}/{total}] {experiment.label}: skipped, already complete ({describe_record(record)})")
        else:
            pending.append((number, experiment))
    running: dict = {}
    started_at: dict = {}
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                number, experiment = pending.pop(0)
                console.say(f"[{number}/{total}] {experiment.label}: running {experiment.iters} iterations "
                            f"(log {experiment.log_path})")
                running[number] = (experiment, *start(experiment, args, console))
                started_at[number] = time.monotonic()
            for number in [n for n, (_, process, _, _) in running.items() if process.poll() is not None]:
                experiment, process, reader, log = running.pop(number)
                reader.join()
                log.close()
                finish(experiment, process.returncode)
                elapsed = _duration(time.monotonic() - started_at[number])
                if experiment.outcome == "failed":
                    console.say(f"[{number}/{total}] {experiment.label}: FAILED after {elapsed} "
                                f"({experiment.reason}; log {experiment.log_path})")
                else:
                    experiment.reason = experiment.reason or describe_record(read_record(experiment))
                    console.say(f"[{number}/{total}] {experiment.label}: {experiment.outcome} in {elapsed}: "
                                f"{experiment.reason}")
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop_children(running, console)
        for _, experiment in pending:
            experiment.outcome = "not started"
        return False
    return True


def stop_children(running: dict, console: Console) -> None:
    """Ctrl+C: ask each child to stop (it saves its last finished iteration), then insist."""
    console.say(f"\nInterrupted: stopping {len(running)} running experiment(s); each keeps its last finished "
                f"iteration (up to {STOP_GRACE_S} s for a model call in progress; Ctrl+C again to kill now).")
    for experiment, process, _, _ in running.values():
        _signal(process, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while any(process.poll() is None for _, process, _, _ in running.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    for experiment, process, reader, log in running.values():
        if process.poll() is None:
            _signal(process, signal.SIGKILL)
            process.wait()
        reader.join(timeout=5)
        log.close()
        experiment.outcome, experiment.reason = "interrupted", "stopped by Ctrl+C; rerun to resume"


def _stop_on_terminate(signum, frame):
    raise KeyboardInterrupt


def _signal(process: subprocess.Popen, which: int) -> None:
    try:
        os.killpg(process.pid, which)   # the child's own session: its benchmark and sandbox processes too
    except (ProcessLookupError, PermissionError):
        pass


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


# ----- summary -------------------------------------------------------------------------------------
def summarize(experiments: list[Experiment], console: Console) -> None:
    console.say("\nSummary")
    for outcome, title in (("ran", "ran"), ("skipped", "skipped (already complete)"),
                           ("budget", "stopped at the budget (raise --max-cost/--max-calls to continue)"),
                           ("interrupted", "interrupted (rerun to resume)"), ("not started", "not started"),
                           ("failed", "FAILED")):
        chosen = [e for e in experiments if e.outcome == outcome]
        if not chosen:
            continue
        console.say(f"  {title}: {len(chosen)}")
        for experiment in chosen:
            detail = f": {experiment.reason}" if outcome in ("ran", "budget", "failed") and experiment.reason else ""
            console.say(f"    - {experiment.label}{detail}")
            if outcome == "failed":
                for line in experiment.tail:
                    console.say(f"        | {line}")
                console.say(f"        full log: {experiment.log_path}")


def resume_command(argv: list[str]) -> str:
    kept = [a for a in argv if a != "--fresh"]
    return shlex.join(["python", "run_all.py", *kept])


def preset_note(args, experiments: list[Experiment], argv: list[str]) -> str:
    preset = args.preset or DEFAULT_PRESET
    per_level = {}
    for experiment in experiments:
        per_level.setdefault(experiment.level, (experiment.iters, experiment.flags))
    levels = "; ".join(f"{display_name(level)} {iters} iterations{(' ' + ' '.join(flags)) if flags else ''}"
                       for level, (iters, flags) in per_level.items())
    seeds = len({e.seed for e in experiments})
    return (f"Produced by `{resume_command(argv)}` (preset {preset}: {levels}; {seeds} seed(s); "
            f"provider {args.provider or 'chosen automatically (LLM_PROVIDER, else the first configured backend)'}"
            f"{', model ' + args.model if args.model else ''}; on a machine with {os.cpu_count()} CPU cores).")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_terminate)   # the children have sessions of their own: stop them too
    console = Console()
    experiments = plan(args)
    console.say(f"run_all: {len(experiments)} experiment(s): levels {', '.join(args.level_list)}; tasks "
                f"{', '.join(args.task_list)}; results under {Path(args.results_root)}")
    finished = run_experiments(experiments, args, console)
    summarize(experiments, console)
    if not finished:
        console.say(f"\nStopped. To resume, run: {resume_command(argv)}")
        return 130
    failed = any(e.outcome == "failed" for e in experiments)
    if not args.no_analysis:
        import analyze_results
        console.say("\nAnalysis")
        failed |= analyze_results.main(["--results-root", args.results_root,
                                        "--note", preset_note(args, experiments, argv)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
