"""Level 4, the Arena loop: code agents try to pass a growing suite, test agents try to break them.

One harness iteration is one arena round (so checkpoint, resume, budget, progress bar and experiment.json
come from tasks/harness.py). A round has four phases, each saved to round-progress.json as it finishes
(with the LLM client's state), so a run killed mid-round resumes inside that round:
  code      every code agent's sandboxed propose() asks for a change; each candidate is scored on the whole
            current suite (in parallel processes) and kept only if it beats that agent's own score;
  tests     every test agent sees one code agent's code (white-box, in turn) and proposes cases; each must
            pass admission (referee.py) to count;
  evaluate  every code agent is scored on the suite plus the admitted cases, each case in its own --tests
            file so we know whom it broke; test agents score BREAK_REWARD per admitted case that broke at
            least one code agent and lose REJECT_PENALTY per rejected case; admitted cases join the suite;
  select    every --replace-every rounds (population > 1): the worst code agent is replaced by a copy of the
            best with a mutated propose(), the worst test agent by a copy of the best with a mutated focus.
The round's metric is the best code agent's arena score on the grown suite (see arena_score).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.attempts import BULKY_DETAILS, DETAILS_CHARS, failure_feedback  # noqa: E402
from tasks.checkpoint import atomic_write_text  # noqa: E402
from tasks.code_edits import CandidateRejected, describe_edit_format  # noqa: E402
from tasks.harness import Iteration, Run, sibling  # noqa: E402
from tasks.task_runner import RunResult, TaskError, run_solution, write_solution  # noqa: E402

llm = sibling(__file__, "llm")
code_agents = sibling(__file__, "code_agent")
test_agents = sibling(__file__, "test_agent")
referee = sibling(__file__, "referee")
CodeAgent, TestAgent = code_agents.CodeAgent, test_agents.TestAgent

DEFAULT_CODE_AGENTS = 4
DEFAULT_TEST_AGENTS = 4
DEFAULT_REPLACE_EVERY = 2
CASES_PER_PROPOSAL = 3       # per test agent per round: keeps the suite (and snake's scenario time) in check
BREAK_REWARD = 1.0
REJECT_PENALTY = 0.5
REJECTIONS_IN_RECORD = 12    # per round, in experiment.json; all of them are in rejected_cases.json
SUITE_FILE = "adversarial_suite.json"      # accepted cases only, in the task's --tests format
REJECTED_FILE = "rejected_cases.json"
PROGRESS_FILE = "round-progress.json"
PHASES = ("code", "tests", "evaluate", "select", "done")
LEVEL_DIR = Path(__file__).resolve().parent


class ArenaLoop:
    level = "arena-loop"

    def start(self, run: Run) -> dict:
        task, settings = run.task, settings_from(run.args)
        if not task.higher_is_better or getattr(task.config, "CASE_SCHEMA", None) is None:
            raise TaskError(f"task {task.name} cannot join the arena: it needs HIGHER_IS_BETTER = True and a "
                            f"CASE_SCHEMA (plus reference_check or None) in its config.py")
        code = task.initial_solution.read_text(encoding="utf-8")
        return {"settings": settings,
                "code_agents": [CodeAgent(id=f"c{n + 1}", code=code, propose_source=code_agents.DEFAULT_PROPOSE)
                                .to_dict() for n in range(settings["code_agents"])],
                "test_agents": [agent.to_dict() for agent in test_agents.initial_agents(settings["test_agents"])],
                "next_id": {"code": settings["code_agents"], "test": settings["test_agents"]},
                "suite": [], "rejected": [], "mutations": [], "round": None}

    def iterate(self, run: Run, state: dict, index: int) -> Iteration:
        asked = settings_from(run.args)
        if asked != state["settings"] and not getattr(self, "_warned", False):
            self._warned = True
            print(f"[arena] this run was started with {state['settings']}; it keeps them (the command line asked "
                  f"for {asked}). Use --fresh to start over with new settings.", file=sys.stderr)
        return ArenaRound(run, state, index).play()


# ----- command line: the harness's flags plus the arena's own -------------------------------------
class _LabelAction(argparse.Action):
    """--label NAME sends results to arena-loop/results-NAME unless --results-dir says otherwise."""

    def __call__(self, parser, namespace, value, option_string=None):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            parser.error(f"--label must be letters, digits, '.', '_' or '-', got {value!r}")
        setattr(namespace, self.dest, value)
        if namespace.results_dir is None:
            namespace.results_dir = str(LEVEL_DIR / f"results-{value}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--code", type=_positive, default=DEFAULT_CODE_AGENTS,
                        help=f"code agents in the population (default {DEFAULT_CODE_AGENTS})")
    parser.add_argument("--test", type=_positive, default=DEFAULT_TEST_AGENTS,
                        help=f"test agents in the population (default {DEFAULT_TEST_AGENTS})")
    parser.add_argument("--replace-every", type=_positive, default=DEFAULT_REPLACE_EVERY, metavar="K",
                        help="every K rounds the worst code agent and the worst test agent are replaced by "
                             f"mutated copies of the best (default {DEFAULT_REPLACE_EVERY})")
    parser.add_argument("--label", default=None, action=_LabelAction,
                        help="name of this arena variant; results go to arena-loop/results-LABEL "
                             "(e.g. --label single for 4a) unless --results-dir is given")


def settings_from(args) -> dict:
    return {"code_agents": getattr(args, "code", DEFAULT_CODE_AGENTS),
            "test_agents": getattr(args, "test", DEFAULT_TEST_AGENTS),
            "replace_every": getattr(args, "replace_every", DEFAULT_REPLACE_EVERY)}


def arena_score(task, result: RunResult, suite_files: list[str]) -> tuple[float | None, float | None]:
    """(arena score, original score) of one run. The arena score is the mean over every case of the task's
    own suite and of `suite_files`, each suite's score weighted by its number of cases, the task's own score
    taken as a percent of PERFECT_SCORE; it is given back in the task's units (x PERFECT_SCORE / 100), so with
    no adversarial cases it equals the task's metric. A run that did not finish scores None."""
    if not result.ok:
        return None, None
    suites = result.details.get("suites") or {}
    scale = task.perfect_score or 100.0
    own = suites.get("original") or {"total": 1, "score": result.metric}
    weighted, total = own["total"] * own["score"] * 100.0 / scale, own["total"]
    for name in suite_files:
        suite = suite_result(suites, name)
        weighted += suite.get("total", 0) * suite.get("score", 0.0)
        total += suite.get("total", 0)
    return weighted / total * scale / 100.0, own["score"]


def suite_result(suites: dict, file_name: str) -> dict:
    """A --tests file's entry in details.suites: benchmarks name it by file name (support: by stem)."""
    path = Path(file_name)
    return suites.get(path.name) or suites.get(path.stem) or {}


def feedback_text(result: RunResult) -> str:
    if not result.ok:
        return f"status {result.status}: {result.message.strip()[:400]}"
    hints = {k: v for k, v in result.details.items() if k not in BULKY_DETAILS}
    return json.dumps(hints, ensure_ascii=False)[:DETAILS_CHARS]


class ArenaRound:
    """One round; every phase leaves the level state consistent and saved (see PROGRESS_FILE)."""

    def __init__(self, run: Run, state: dict, index: int):
        self.run, self.state, self.index, self.task = run, state, index, run.task
        self.progress_path = run.directory / PROGRESS_FILE
        self.spec = llm.task_spec(run.task)

    # ----- flow and persistence --------------------------------------------------------------------
    def play(self) -> Iteration:
        self._resume_or_begin()
        for phase, step in (("code", self.code_phase), ("tests", self.test_phase),
                            ("evaluate", self.evaluate_phase), ("select", self.select_phase)):
            if self.round["phase"] == phase:
                step()
                self.round["phase"] = PHASES[PHASES.index(phase) + 1]
                if phase == "select":
                    self.round["result"] = self.summarize()
                self.save()
        return self.finish()

    @property
    def round(self) -> dict:
        return self.state["round"]

    def _resume_or_begin(self) -> None:
        saved = None
        if self.progress_path.is_file():
            saved = json.loads(self.progress_path.read_text(encoding="utf-8"))
        if saved and saved.get("index") == self.index and saved["level_state"].get("round"):
            self.state.clear()
            self.state.update(saved["level_state"])
            self.run.client.load_state_dict(saved["llm"])
            print(f"[arena] resuming round {self.index} at phase {self.round['phase']}", file=sys.stderr)
        else:
            self.state["round"] = {"index": self.index, "phase": "code", "proposals": {}, "tests": {},
                                   "pending": [], "benchmark_s": 0.0, "kept": [], "best_before_cases": None,
                                   "replaced": []}

    def save(self) -> None:
        payload = {"index": self.index, "level_state": self.state, "llm": self.run.client.state_dict()}
        atomic_write_text(self.progress_path, json.dumps(payload))

    def code_list(self) -> list:
        return [CodeAgent.from_dict(data) for data in self.state["code_agents"]]

    def test_list(self) -> list:
        return [TestAgent.from_dict(data) for data in self.state["test_agents"]]

    def suite_files(self) -> list[str]:
        return [str(self.run.directory / SUITE_FILE)] if self.state["suite"] else []

    # ----- evaluation ------------------------------------------------------------------------------
    def evaluate_all(self, jobs: list[tuple[str, str]], suite_files: list[str]) -> dict[str, RunResult]:
        """Score (label, code) pairs on the task's cases plus `suite_files`, each in its own benchmark process,
        as many at once as there are cores; identical code is scored once."""
        paths, by_code = {}, {}
        for label, code in jobs:
            if code not in by_code:
                path = self.run.directory / "candidates" / f"round-{self.index:04d}-{label}.py"
                by_code[code] = write_solution(code, path)
            paths[label] = by_code[code]
        unique = list(dict.fromkeys(paths.values()))
        workers = max(1, min(len(unique), os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(zip(unique, pool.map(lambda p: run_solution(self.task, p, extra_tests=suite_files),
                                                unique)))
        for path, result in results.items():
            atomic_write_text(path.with_suffix(".json"), json.dumps(result.to_dict(), indent=1))
        self.round["benchmark_s"] += max((r.duration_s for r in results.values()), default=0.0)
        return {label: results[path] for label, path in paths.items()}

    def score_missing(self, agents: list) -> None:
        """Agents without a score on the current suite (a fresh run) are scored before they compete."""
        missing = [agent for agent in agents if agent.score is None]
        if not missing:
            return
        suite_files = self.suite_files()
        results = self.evaluate_all([(f"{agent.id}-current", agent.code) for agent in missing], suite_files)
        for agent in missing:
            result = results[f"{agent.id}-current"]
            agent.score, agent.original_score = arena_score(self.task, result, suite_files)
            agent.feedback = feedback_text(result)

    # ----- phase 1: code agents improve against the current suite -----------------------------------
    def code_phase(self) -> None:
        agents = self.code_list()
        self.score_missing(agents)
        self.state["code_agents"] = [agent.to_dict() for agent in agents]
        edit_format = describe_edit_format()
        for agent in agents:
            if agent.id in self.round["proposals"]:
                continue
            context = code_agents.build_context(agent, self.task, self.index, edit_format)
            try:
                reply = code_agents.run_propose(agent, context, self.run.client)
                proposal = {"code": self.run.propose(reply, agent.code), "rejected": ""}
            except CandidateRejected as rejected:
                proposal = {"code": None, "rejected": f"{rejected.kind}: {rejected.message}"[:400]}
            self.round["proposals"][agent.id] = proposal
            self.save()
        proposed = [(agent.id, self.round["proposals"][agent.id]["code"]) for agent in agents
                    if self.round["proposals"][agent.id]["code"] is not None]
        suite_files = self.suite_files()
        results = self.evaluate_all(proposed, suite_files) if proposed else {}
        for agent in agents:
            proposal = self.round["proposals"][agent.id]
            entry = {"round": self.index, "kept": False, "score": None}
            if proposal["code"] is None:
                agent.last_error = proposal["rejected"]
                entry["rejected"] = proposal["rejected"][:120]
            else:
                result = results[agent.id]
                score, original = arena_score(self.task, result, suite_files)
                entry["score"] = score
                if score is not None and self.task.is_better(score, agent.score):
                    agent.code, agent.score, agent.original_score = proposal["code"], score, original
                    agent.feedback, agent.last_error, entry["kept"] = feedback_text(result), "", True
                    self.round["kept"].append(agent.id)
                else:
                    agent.last_error = failure_feedback(self.task, result, agent.score)
            agent.remember(entry)
        self.state["code_agents"] = [agent.to_dict() for agent in agents]
        self.round["best_before_cases"] = max((a.score for a in agents if a.score is not None), default=None)

    # ----- phase 2: test agents propose cases; admission decides -----------------------------------
    def test_phase(self) -> None:
        agents, targets = self.test_list(), self.code_list()
        originals = referee.original_cases(self.task)
        suite_cases = [entry["case"] for entry in self.state["suite"]]
        seen = {referee.case_key(self.task, case) for case in originals}
        seen |= {entry["key"] for entry in self.state["suite"]}
        seen |= {entry["key"] for entry in self.round["pending"]}
        schema = llm.cases_schema(self.task.config.CASE_SCHEMA, CASES_PER_PROPOSAL)
        for number, agent in enumerate(agents):
            if agent.id in self.round["tests"]:
                continue
            target = targets[(number + self.index - 1) % len(targets)]
            rng = random.Random(f"{self.run.args.seed}-{self.index}-{agent.id}")
            examples = suite_cases[-llm.EXAMPLES_SHOWN:] or rng.sample(originals, min(2, len(originals)))
            prompt = llm.test_agent_prompt(self.spec, target.code, agent.focus, examples,
                                           referee.reference_text(self.task, "", rng), self.task.config.CASE_SCHEMA,
                                           CASES_PER_PROPOSAL, llm.case_description(self.task))
            cases, error = test_agents.propose_cases(agent, self.run.client, prompt, schema)
            outcome = {"target": target.id, "proposed": len(cases), "accepted": 0, "rejected": 0, "error": error}
            for case in cases[:CASES_PER_PROPOSAL]:
                decision = referee.admit(self.task, case, seen, self.run.client, self.spec)
                if decision.accepted:
                    outcome["accepted"] += 1
                    self.round["pending"].append({"case": case, "key": referee.case_key(self.task, case),
                                                  "by": agent.id, "target": target.id, "round": self.index})
                else:
                    outcome["rejected"] += 1
                    self.state["rejected"].append({"case": case, "by": agent.id, "round": self.index,
                                                   "stage": decision.stage, "reason": decision.reason})
            self.round["tests"][agent.id] = outcome
            self.save()
        self._write_rejected()

    # ----- phase 3: everyone against the grown suite ------------------------------------------------
    def evaluate_phase(self) -> None:
        agents, pending = self.code_list(), self.round["pending"]
        if pending:
            folder = self.run.directory / "round-cases"
            folder.mkdir(parents=True, exist_ok=True)
            case_files = []
            for number, entry in enumerate(pending, start=1):
                path = folder / f"round-{self.index:04d}-case-{number:02d}.json"
                atomic_write_text(path, json.dumps({"cases": [entry["case"]]}, ensure_ascii=False))
                case_files.append(str(path))
            suite_files = self.suite_files() + case_files
            results = self.evaluate_all([(f"{agent.id}-final", agent.code) for agent in agents], suite_files)
            for entry in pending:
                entry["broke"] = []
            for agent in agents:
                result = results[f"{agent.id}-final"]
                agent.score, agent.original_score = arena_score(self.task, result, suite_files)
                agent.feedback = feedback_text(result)
                suites = result.details.get("suites") or {}
                for entry, path in zip(pending, case_files):
                    outcome = suite_result(suites, Path(path).name)
                    # a run that did not finish cannot say which case broke it: every new case is charged
                    if not result.ok or outcome.get("passed", 0) < outcome.get("total", 1):
                        entry["broke"].append(agent.id)
            self.state["suite"].extend(pending)
            atomic_write_text(self.run.directory / SUITE_FILE, json.dumps(
                {"cases": [entry["case"] for entry in self.state["suite"]]}, ensure_ascii=False, indent=1))
        self.state["code_agents"] = [agent.to_dict() for agent in agents]
        testers = self.test_list()
        for agent in testers:
            outcome = self.round["tests"].get(agent.id, {})
            breaking = sum(1 for entry in pending if entry["by"] == agent.id and entry["broke"])
            score = BREAK_REWARD * breaking - REJECT_PENALTY * outcome.get("rejected", 0)
            agent.remember({"round": self.index, "score": score, "breaking": breaking,
                            "accepted": outcome.get("accepted", 0), "rejected": outcome.get("rejected", 0)})
            agent.error = outcome.get("error", "")
        self.state["test_agents"] = [agent.to_dict() for agent in testers]
        # the round's scores, before selection replaces anyone
        self.round["scores"] = {"code": {a.id: a.score for a in agents},
                                "original": {a.id: a.original_score for a in agents},
                                "test": {a.id: a.history[-1]["score"] for a in testers}}

    # ----- phase 4: selection -----------------------------------------------------------------------
    def select_phase(self) -> None:
        every = self.state["settings"]["replace_every"]
        if self.index % every:
            return
        client = self.run.client
        coders = self.code_list()
        if len(coders) > 1:
            ranked = sorted(range(len(coders)), key=lambda i: (coders[i].score is not None, coders[i].score or 0.0))
            worst, best = ranked[0], ranked[-1]
            if coders[best].score != coders[worst].score:
                self.state["next_id"]["code"] += 1
                child, record = code_agents.mutated_copy(coders[best], f"c{self.state['next_id']['code']}",
                                                         self.index, client)
                record["replaced"] = coders[worst].id
                coders[worst] = child
                self.round["replaced"].append(record)
        testers = self.test_list()
        if len(testers) > 1:
            ranked = sorted(range(len(testers)), key=lambda i: testers[i].recent_score(every))
            worst, best = ranked[0], ranked[-1]
            if testers[best].recent_score(every) != testers[worst].recent_score(every):
                self.state["next_id"]["test"] += 1
                child, record = test_agents.mutated_copy(testers[best], f"t{self.state['next_id']['test']}",
                                                         self.index, client, self.spec, every)
                record["replaced"] = testers[worst].id
                testers[worst] = child
                self.round["replaced"].append(record)
        self.state["code_agents"] = [agent.to_dict() for agent in coders]
        self.state["test_agents"] = [agent.to_dict() for agent in testers]
        self.state["mutations"].extend(self.round["replaced"])

    # ----- the round's record -------------------------------------------------------------------------
    def summarize(self) -> dict:
        coders, testers = self.code_list(), self.test_list()
        best = max(coders, key=lambda a: (a.score is not None, a.score or 0.0))
        pending = self.round["pending"]
        rejections = [entry for entry in self.state["rejected"] if entry["round"] == self.index]
        stages: dict[str, int] = {}
        for entry in rejections:
            stages[entry["stage"]] = stages.get(entry["stage"], 0) + 1
        tests = self.round["tests"]
        extra = {
            "best_agent": best.id, "original_metric": best.original_score,
            "best_before_new_cases": self.round["best_before_cases"],
            "suite_size": len(self.state["suite"]),
            "cases_proposed": sum(t.get("proposed", 0) for t in tests.values()),
            "cases_accepted": len(pending), "cases_rejected": len(rejections),
            "breaking_cases": sum(1 for entry in pending if entry.get("broke")),
            "rejections_by_stage": stages,
            "rejections": [{"by": e["by"], "stage": e["stage"], "reason": e["reason"][:160]}
                           for e in rejections[:REJECTIONS_IN_RECORD]],
            "code_scores": self.round["scores"]["code"],
            "original_scores": self.round["scores"]["original"],
            "test_scores": self.round["scores"]["test"],
            "population": {"code": [a.id for a in coders], "test": [a.id for a in testers]},
            "kept": list(self.round["kept"]),
            "test_errors": {agent_id: t["error"] for agent_id, t in tests.items() if t.get("error")},
            "replaced": [{k: r[k] for k in ("kind", "parent", "child", "replaced", "outcome", "reason")}
                         for r in self.round["replaced"]],
        }
        note = (f"{len(pending)} new cases ({extra['breaking_cases']} breaking), {len(rejections)} rejected; "
                f"suite {extra['suite_size']}; best {best.id}")
        return {"metric": best.score, "accepted": bool(self.round["kept"]), "status": "ok" if best.score is not None
                else "error", "note": note, "benchmark_s": self.round["benchmark_s"], "extra": extra,
                "best_code": best.code}

    def finish(self) -> Iteration:
        result = self.round["result"]
        if result["metric"] is not None:
            self.run.accept(result["best_code"], result["metric"])
        self.state["round"] = None
        return Iteration(metric=result["metric"], accepted=result["accepted"], status=result["status"],
                         note=result["note"], benchmark_s=result["benchmark_s"], extra=result["extra"])

    def _write_rejected(self) -> None:
        atomic_write_text(self.run.directory / REJECTED_FILE,
                          json.dumps({"rejected": self.state["rejected"]}, ensure_ascii=False, indent=1))
