"""Write experiment-results.md and results-plots/ from every experiment record on disk: `python analyze_results.py`.

Reads `<root>/*/results/*/experiment.json` (and `arena-loop/results-single/*/experiment.json`). Every number in
the report comes from one of those records, with its provider and model beside it. When the arena has written
an adversarial suite for a task, every level's best solution is scored on the task's own tests and on that
suite, side by side (those scores are cached by file hash, so rerunning the analysis is cheap).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))

from run_all import KNOWN_LEVELS, display_name  # noqa: E402

ARENA_LEVEL = "arena-loop"
SUITE_FILE = "adversarial_suite.json"
ORIGINAL_SUITE = "original"
CACHE_NAME = "robustness-cache.json"     # kept under arena-loop/results/ (ignored by git, like every result)
REPORT_NAME = "experiment-results.md"
PLOTS_DIR_NAME = "results-plots"
# Two-sided 95% critical values of Student's t by degrees of freedom; past 30 the next lower tabulated
# value is used, which widens the interval slightly (the conservative side).
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINE_STYLES = ("-", "--", "-.", ":")
RECORD_KEYS = ("level", "task", "seed", "provider", "model", "metric_name", "initial_metric", "best_metric",
               "iterations", "llm_usage", "wall_time_s", "status")


@dataclass
class Record:
    data: dict
    path: Path
    source: str          # "results" or "results-single"

    @property
    def level(self) -> str:
        return self.path.parents[2].name     # the folder it lives in, whatever the record calls itself

    @property
    def label(self) -> str:
        return display_name(self.level) + (" (single)" if self.source == "results-single" else "")

    @property
    def group(self) -> tuple:
        return (self.label, self.data["provider"], self.data["model"])

    def __getitem__(self, key):
        return self.data[key]


# ----- reading -------------------------------------------------------------------------------------
def record_paths(root: Path) -> list[tuple[Path, str]]:
    found = [(p, "results") for p in root.glob("*/results/*/experiment.json")]
    found += [(p, "results-single") for p in (root / ARENA_LEVEL / "results-single").glob("*/experiment.json")]
    return found


def load_records(root: Path) -> tuple[list[Record], list[str]]:
    records, problems = [], []
    for path, source in record_paths(root):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{path}: unreadable ({error})")
            continue
        missing = [key for key in RECORD_KEYS if not isinstance(data, dict) or key not in data]
        if missing:
            problems.append(f"{path}: not an experiment record (missing {', '.join(missing)})")
            continue
        records.append(Record(data, path, source))
    order = {name: i for i, name in enumerate(KNOWN_LEVELS)}
    records.sort(key=lambda r: (r["task"], order.get(r.level, len(order)), r.level, r.source, r["provider"],
                                r["model"], r["seed"]))
    return records, problems


# ----- statistics ----------------------------------------------------------------------------------
def t_critical_95(degrees_of_freedom: int) -> float:
    if degrees_of_freedom < 1:
        raise ValueError("a confidence interval needs at least two values")
    usable = [df for df in T_95 if df <= degrees_of_freedom]
    return T_95[max(usable)] if degrees_of_freedom <= 120 else 1.960


def confidence_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and the two ends of its 95% confidence interval (t-distribution, n-1 degrees of freedom)."""
    mean = statistics.fmean(values)
    half_width = t_critical_95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half_width, mean + half_width


# ----- numbers from a record ------------------------------------------------------------------------
def best_so_far(record: Record) -> list[tuple[int, float]]:
    points = [(0, record["initial_metric"])]
    points += [(entry["iteration"], entry["best_metric"]) for entry in record["iterations"]]
    return points


def cumulative_cost(record: Record) -> list[tuple[float, float, float]]:
    """(cost USD, tokens, best score) after each iteration, from the iteration entries."""
    cost, tokens, points = 0.0, 0, [(0.0, 0, record["initial_metric"])]
    for entry in record["iterations"]:
        cost += entry.get("cost_usd", 0.0)
        tokens += entry.get("tokens_in", 0) + entry.get("tokens_out", 0)
        points.append((cost, tokens, entry["best_metric"]))
    return points


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


# ----- plots ---------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_task(task: str, records: list[Record], plots_dir: Path) -> list[tuple[str, Path]]:
    plt = _pyplot()
    plots_dir.mkdir(parents=True, exist_ok=True)
    metric = records[0]["metric_name"]
    groups = _grouped(records)
    written = []

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for number, ((label, provider, model), members) in enumerate(groups.items()):
        length = max(len(best_so_far(r)) for r in members)
        # a run that stopped early (perfect score) keeps its final best for the remaining iterations
        curves = [[p[1] for p in best_so_far(r)] for r in members]
        mean_curve = [statistics.fmean(c[min(i, len(c) - 1)] for c in curves) for i in range(length)]
        suffix = f" (mean of {len(members)} seeds)" if len(members) > 1 else ""
        axes.plot(range(length), mean_curve, label=f"{label} — {provider}/{model}{suffix}", **_style(number))
    axes.set(xlabel="iteration", ylabel=f"best {metric} so far", title=f"{task}: best score by iteration")
    axes.xaxis.get_major_locator().set_params(integer=True)
    written.append(("best score by iteration", _save(figure, axes, plots_dir / f"{task}-score-by-iteration.png")))

    paid = any(point[0] > 0 for r in records for point in cumulative_cost(r))
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for number, record in enumerate(records):
        points = cumulative_cost(record)
        xs = [p[0] if paid else p[1] for p in points]
        seed = f" seed {record['seed']}" if record["seed"] else ""
        axes.step(xs, [p[2] for p in points], where="post",
                  label=f"{record.label}{seed} — {record['provider']}/{record['model']}", **_style(number))
    xlabel = "cumulative LLM cost (USD)" if paid else "cumulative LLM tokens in+out (every provider here cost $0)"
    axes.set(xlabel=xlabel, ylabel=f"best {metric} so far",
             title=f"{task}: best score against {'cost' if paid else 'tokens'}")
    written.append(("best score against cost" if paid else "best score against tokens (no run had a cost)",
                    _save(figure, axes, plots_dir / f"{task}-score-by-cost.png")))
    return written


def _save(figure, axes, path: Path) -> Path:
    import matplotlib.pyplot as plt
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _style(number: int) -> dict:
    """Equal curves are common (no improvement): distinct markers and line styles keep each one visible."""
    return {"marker": MARKERS[number % len(MARKERS)], "linestyle": LINE_STYLES[number % len(LINE_STYLES)],
            "markersize": max(4, 9 - number), "alpha": 0.85}


def _grouped(records: list[Record]) -> dict[tuple, list[Record]]:
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    return groups


# ----- cross-level robustness ----------------------------------------------------------------------
def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _task_hash(task_dir: Path) -> str:
    """The benchmark and its data: a change to either invalidates cached scores."""
    digest = hashlib.sha256()
    for path in sorted(p for p in task_dir.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts):
        digest.update(path.relative_to(task_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def score_robustness(root: Path, task_name: str, records: list[Record], cache: dict) -> list[dict] | None:
    """Each level's seed-0 best solution (the arena's single variant too) on the original tests and the arena's
    adversarial suite; None when the arena has written no suite for this task."""
    suite = root / ARENA_LEVEL / "results" / task_name / SUITE_FILE
    if not suite.is_file():
        return None
    from tasks.task_runner import TaskError, load_task, run_solution
    try:
        task = load_task(task_name)
    except TaskError as error:
        print(f"robustness for {task_name} left out: {error}", file=sys.stderr)
        return None
    task_hash, suite_hash = _task_hash(task.path), _file_hash(suite)
    rows = []
    for record in records:
        if record["seed"] != 0:
            continue
        best = record.path.parent / "solutions" / "best.py"
        row = {"record": record, "original": None, "adversarial": None, "status": "no solutions/best.py"}
        if best.is_file():
            key = f"{task_name}:{task_hash}:{suite_hash}:{_file_hash(best)}"
            if key not in cache:
                result = run_solution(task, best, extra_tests=[str(suite)])
                suites = result.details.get("suites") or {}
                extra = suites.get(suite.name) or next((v for k, v in suites.items() if k != ORIGINAL_SUITE), None)
                cache[key] = {"status": result.status, "message": result.message[:200],
                              "original": suites.get(ORIGINAL_SUITE), "adversarial": extra}
            row.update(cache[key])
        rows.append(row)
    return rows


def _load_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def _suite_cell(suite: dict | None) -> str:
    if not suite:
        return "—"
    return f"{fmt(suite.get('score'))} ({suite.get('passed')}/{suite.get('total')} passed)"


# ----- the report ----------------------------------------------------------------------------------
def task_section(task: str, records: list[Record], plots: list[tuple[str, Path]], robustness: list[dict] | None,
                 report_dir: Path) -> list[str]:
    metric = records[0]["metric_name"]
    direction = "higher is better" if records[0].data.get("higher_is_better", True) else "lower is better"
    lines = [f"## {task}", "", f"Metric: {metric} ({direction}).", "",
             "| level | seed | provider | model | initial | best | iterations | LLM calls | tokens in | tokens out "
             "| cost (USD) | wall time (s) | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        usage = r["llm_usage"]
        lines.append(f"| {r.label} | {r['seed']} | {r['provider']} | {r['model']} | {fmt(r['initial_metric'])} "
                     f"| {fmt(r['best_metric'])} | {len(r['iterations'])} | {usage.get('calls', 0)} "
                     f"| {usage.get('tokens_in', 0)} | {usage.get('tokens_out', 0)} | {usage.get('cost_usd', 0.0):.4f} "
                     f"| {r['wall_time_s']:.1f} | {r['status']} |")
    repeated = {group: members for group, members in _grouped(records).items() if len(members) >= 2}
    if repeated:
        lines += ["", "Across seeds (mean and 95% confidence interval, t-distribution):", "",
                  "| level | provider | model | seeds | best: mean [95% CI] | improvement: mean [95% CI] "
                  "| cost (USD): mean |", "|---|---|---|---|---|---|---|"]
        for (label, provider, model), members in repeated.items():
            best = confidence_interval([m["best_metric"] for m in members])
            gain = confidence_interval([m["best_metric"] - m["initial_metric"] for m in members])
            cost = statistics.fmean(m["llm_usage"].get("cost_usd", 0.0) for m in members)
            lines.append(f"| {label} | {provider} | {model} | {len(members)} | {_interval(best)} | {_interval(gain)} "
                         f"| {cost:.4f} |")
    if robustness is not None:
        lines += ["", f"Robustness: each level's best solution (seed 0) re-scored on the task's own tests and on the "
                      f"arena's adversarial suite (`{ARENA_LEVEL}/results/{task}/{SUITE_FILE}`):", "",
                  "| level | provider | model | best in its run | original tests | adversarial suite | cost (USD) "
                  "| status |", "|---|---|---|---|---|---|---|---|"]
        for row in robustness:
            r = row["record"]
            lines.append(f"| {r.label} | {r['provider']} | {r['model']} | {fmt(r['best_metric'])} "
                         f"| {_suite_cell(row['original'])} | {_suite_cell(row['adversarial'])} "
                         f"| {r['llm_usage'].get('cost_usd', 0.0):.4f} | {row['status']} |")
        arena = [row for row in robustness if row["record"].level == ARENA_LEVEL]
        if arena and arena[0]["original"]:
            lines += ["", f"The arena's own best solution scores {_suite_cell(arena[0]['original'])} on the original "
                          f"tests ({arena[0]['record']['provider']}/{arena[0]['record']['model']})."]
    lines += arena_case_lines(records)
    for title, path in plots:
        lines += ["", f"![{task}: {title}]({Path(os.path.relpath(path, report_dir)).as_posix()})"]
    return lines + [""]


def arena_case_lines(records: list[Record]) -> list[str]:
    """How many test cases the arena's test agents proposed, and how many the checks rejected and why."""
    lines = []
    for record in records:
        rounds = [i for i in record["iterations"] if "cases_accepted" in i]
        if record.level != ARENA_LEVEL or not rounds:
            continue
        accepted = sum(i["cases_accepted"] for i in rounds)
        rejected = sum(i["cases_rejected"] for i in rounds)
        stages: dict[str, int] = {}
        for i in rounds:
            for stage, count in (i.get("rejections_by_stage") or {}).items():
                stages[stage] = stages.get(stage, 0) + count
        why = ", ".join(f"{stage} {count}" for stage, count in sorted(stages.items())) or "none"
        seed = f" seed {record['seed']}" if record["seed"] else ""
        lines += ["", f"{record.label}{seed} test cases: {accepted + rejected} proposed, {accepted} accepted into the "
                      f"suite, {rejected} rejected (by check: {why}); every rejected case is kept with its reason "
                      "in the run's `rejected_cases.json`."]
    return lines


def _interval(values: tuple[float, float, float]) -> str:
    mean, low, high = values
    return f"{mean:.4g} [{low:.4g}, {high:.4g}]"


def build_report(root: Path, records: list[Record], problems: list[str], report: Path, plots_dir: Path,
                 note: str) -> str:
    cache_path = root / ARENA_LEVEL / "results" / CACHE_NAME
    cache = _load_cache(cache_path)
    cache_size = len(cache)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = ["# Experiment results", "",
             f"Written by `python analyze_results.py` at {generated} from {len(records)} experiment record(s) "
             f"(`*/results/*/experiment.json` under {'the repository' if root == REPO_ROOT else f'`{root}`'}).",
             note or "How the records were produced is not known to this analysis (run through `run_all.py` to "
                     "have its command and preset noted here).",
             f"Providers and models on record: {', '.join(sorted({r['provider'] + '/' + r['model'] for r in records}))}; "
             f"code version(s) the runs started from: {', '.join(sorted({r.data.get('code_version', 'unknown') for r in records}))}; "
             f"the experiments' wall times add up to {sum(r['wall_time_s'] for r in records) / 60:.1f} minutes.", "",
             "Scores are each run's best so far; tokens, calls and cost are the LLM client's own accounting; wall "
             "time is the run's, summed over resumed sessions.", ""]
    if problems:
        lines += ["Records that could not be read (left out):", ""] + [f"- {p}" for p in problems] + [""]
    by_task: dict[str, list[Record]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    for task, members in by_task.items():
        robustness = score_robustness(root, task, members, cache)
        lines += task_section(task, members, plot_task(task, members, plots_dir), robustness, report.parent)
    if len(cache) != cache_size:
        from tasks.checkpoint import atomic_write_text
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path, json.dumps(cache, indent=1))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write experiment-results.md and results-plots/*.png from every "
                                                 "experiment record (*/results/*/experiment.json).")
    parser.add_argument("--results-root", default=str(REPO_ROOT),
                        help="folder holding <level>/results/ (default: the repository)")
    parser.add_argument("--output", help=f"the report (default <results-root>/{REPORT_NAME}); plots go beside it "
                                         f"in {PLOTS_DIR_NAME}/")
    parser.add_argument("--note", default="", help="how the results were produced (run_all.py passes its command)")
    args = parser.parse_args(argv)
    root = Path(args.results_root).resolve()
    report = Path(args.output).resolve() if args.output else root / REPORT_NAME
    records, problems = load_records(root)
    if not records:
        for problem in problems:
            print(f"skipped {problem}", file=sys.stderr)
        print(f"No experiment records found under {root} (looked for */results/*/experiment.json). Run some "
              f"experiments first: `python run_all.py --preset quick` for every level and task, or one of them, e.g. "
              f"`python autoresearch/experiment.py --task snake --iters 3`. Then run `python analyze_results.py` "
              f"again.", file=sys.stderr)
        return 1
    text = build_report(root, records, problems, report, report.parent / PLOTS_DIR_NAME, args.note)
    from tasks.checkpoint import atomic_write_text
    atomic_write_text(report, text)
    print(f"wrote {report} ({len(records)} records) and plots in {report.parent / PLOTS_DIR_NAME}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
