"""A task folder in, a validated task out; a solution path in, a structured run result out.

A task is a folder of three files (config.py, initial_solution.py, benchmark.py); `load_task` checks it and says
exactly what is missing. `run_solution` runs the task's trusted benchmark as a separate process with a
scrubbed environment (the benchmark in turn hosts the candidate in the sandbox) and reads its `result:` line.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

TASKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TASKS_DIR.parent
REQUIRED_FILES = ("config.py", "initial_solution.py", "benchmark.py")
REQUIRED_SETTINGS = {"TASK_NAME": str, "METRIC_NAME": str, "HIGHER_IS_BETTER": bool, "PROMPT_TEMPLATE": str,
                     "REQUIRED_FUNCTIONS": dict}
BENCHMARK_TIMEOUT_S = 600   # outer wall clock for one benchmark process; a task may set its own in config.py
OUTPUT_TAIL_CHARS = 2000
BENCHMARK_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONHASHSEED")  # nothing secret


class TaskError(ValueError):
    """A task folder that cannot be used; the message says what to fix."""


@dataclass
class Task:
    name: str
    path: Path
    config: ModuleType

    @property
    def metric_name(self) -> str:
        return self.config.METRIC_NAME

    @property
    def higher_is_better(self) -> bool:
        return self.config.HIGHER_IS_BETTER

    @property
    def perfect_score(self) -> float | None:
        return getattr(self.config, "PERFECT_SCORE", None)

    @property
    def required_functions(self) -> dict[str, list[str]]:
        return self.config.REQUIRED_FUNCTIONS

    @property
    def initial_solution(self) -> Path:
        return self.path / "initial_solution.py"

    @property
    def benchmark(self) -> Path:
        return self.path / "benchmark.py"

    @property
    def is_judged(self) -> bool:
        return bool(getattr(self.config, "USES_LLM_JUDGE", False) or getattr(self.config, "USES_RUBRIC", False))

    def is_better(self, new: float | None, old: float | None) -> bool:
        """Strictly better, in the task's direction; no score is never better."""
        if new is None:
            return False
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old

    def is_perfect(self, metric: float | None) -> bool:
        if metric is None or self.perfect_score is None:
            return False
        return metric >= self.perfect_score if self.higher_is_better else metric <= self.perfect_score

    def build_prompt(self, code: str, metric: float | None) -> str:
        return self.config.build_prompt(code, metric)


@dataclass
class RunResult:
    status: str                     # ok, load_error, missing_function, timeout, memory, crash, invalid_output, ...
    metric: float | None
    duration_s: float
    details: dict = field(default_factory=dict)
    message: str = ""
    stdout_tail: str = ""           # what the candidate printed: feedback for the LLM, never a score
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.metric is not None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunResult":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def list_tasks() -> list[str]:
    return sorted(p.name for p in TASKS_DIR.iterdir() if p.is_dir() and (p / "config.py").is_file())


def load_task(name_or_path: str | os.PathLike) -> Task:
    """Load and validate a task folder: a name under tasks/, or a path to a folder anywhere."""
    candidate = Path(name_or_path)
    path = candidate if candidate.is_dir() else TASKS_DIR / str(name_or_path)
    if not path.is_dir():
        raise TaskError(f"unknown task {str(name_or_path)!r}: no folder tasks/{name_or_path}. "
                        f"Known tasks: {', '.join(list_tasks()) or '(none)'}.")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise TaskError(f"task folder {path} is missing {', '.join(missing)}; a task needs {', '.join(REQUIRED_FILES)}")
    config = _import_config(path)
    problems = [f"{key} must be a {kind.__name__}" for key, kind in REQUIRED_SETTINGS.items()
                if not isinstance(getattr(config, key, None), kind)]
    build_prompt = getattr(config, "build_prompt", None)
    if not callable(build_prompt) or len(inspect.signature(build_prompt).parameters) != 2:
        problems.append("build_prompt(code, metric) must be a function of two arguments")
    functions = getattr(config, "REQUIRED_FUNCTIONS", None)
    if isinstance(functions, dict) and not all(isinstance(k, str) and isinstance(v, list) for k, v in functions.items()):
        problems.append('REQUIRED_FUNCTIONS must map function names to parameter lists, e.g. {"solve": ["data"]}')
    perfect = getattr(config, "PERFECT_SCORE", None)
    if perfect is not None and not isinstance(perfect, (int, float)):
        problems.append("PERFECT_SCORE must be a number or absent")
    judged = getattr(config, "USES_LLM_JUDGE", False) or getattr(config, "USES_RUBRIC", False)
    if judged and not callable(getattr(config, "score_answers", None)):
        problems.append("a judged task (USES_LLM_JUDGE or USES_RUBRIC) must define score_answers(answers, judge=None)")
    if problems:
        raise TaskError(f"task {path.name} ({path / 'config.py'}): " + "; ".join(problems))
    return Task(name=config.TASK_NAME, path=path, config=config)


def _import_config(path: Path) -> ModuleType:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    module_name = f"_task_config_{path.name}"
    spec = importlib.util.spec_from_file_location(module_name, path / "config.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TaskError(f"{path / 'config.py'} failed to import: {type(exc).__name__}: {exc}") from exc
    sys.modules[module_name] = module
    return module


def write_solution(code: str, path: str | os.PathLike) -> Path:
    """Write a candidate atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(code, encoding="utf-8")
    os.replace(temporary, path)
    return path


def run_solution(task: Task, solution_path: str | os.PathLike, extra_tests: tuple[str, ...] | list[str] = (),
                 judge: Callable | None = None) -> RunResult:
    """Score one solution file with the task's benchmark. Never raises for a bad candidate: the status says it."""
    command = [sys.executable, str(task.benchmark), str(solution_path)]
    for suite in extra_tests:
        command += ["--tests", str(suite)]
    environment = {k: os.environ[k] for k in BENCHMARK_ENVIRONMENT if k in os.environ}
    timeout = getattr(task.config, "BENCHMARK_TIMEOUT_S", BENCHMARK_TIMEOUT_S)
    started = time.monotonic()
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment,
                                 cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return RunResult("timeout", None, time.monotonic() - started,
                         message=f"the benchmark did not finish within {timeout} s")
    duration = time.monotonic() - started
    result = _read_result_line(process.stdout)
    if result is None:
        return RunResult("error", None, duration, stderr_tail=process.stderr[-OUTPUT_TAIL_CHARS:],
                         message=f"the benchmark printed no result line (exit code {process.returncode}); "
                                 f"its stderr: {process.stderr.strip()[-500:]}")
    run = RunResult(status=result.get("status", "error"), metric=result.get("metric"), duration_s=duration,
                    details=result.get("details") or {}, message=result.get("message", ""),
                    stdout_tail=result.get("candidate_stdout", ""), stderr_tail=result.get("candidate_stderr", ""))
    if run.status == "ok" and task.is_judged:
        scoring = task.config.score_answers
        extra = {"test_files": [str(t) for t in extra_tests]} if "test_files" in inspect.signature(scoring).parameters else {}
        scored = scoring(result.get("answers") or {}, judge=judge, **extra)
        run.metric = float(scored["metric"])
        run.details = {**run.details, **scored.get("details", {})}
        run.duration_s = time.monotonic() - started
    return run


def _read_result_line(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("result: "):
            try:
                value = json.loads(line[len("result: "):])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None
