"""Level 3, the HyperAgent loop: an inner loop that improves the task's code and an outer loop that rewrites
the agents doing it (after Meta's HyperAgents, DGM-H, simplified: no containers, folder-based versions).

Inner loop, every iteration: the live task agent (agent_code/task_agent.py, run in the sandbox) proposes a change;
the benchmark scores it; it is kept if better, else reverted, as in level 1.
Outer loop, every --meta-every inner iterations: a parent generation is selected (generations.select_parent), its
meta-agent (run in the sandbox) reads the evaluation results, the remaining budget, the last rejection and both
agent sources, and rewrites them. The rewrite is checked (only the two agent files may be named), validated
(compile, sandboxed import with a time limit, signature) and becomes the next generation; an invalid or refused
rewrite is recorded and the live code reverts to the parent. The state is checkpointed after every generation
(Run.checkpoint) and after every inner iteration (by the harness).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.attempts import failure_feedback, summarize_change  # noqa: E402
from tasks.code_edits import CandidateRejected, describe_edit_format  # noqa: E402
from tasks.harness import Iteration, Run, sibling  # noqa: E402
from tasks.sandbox import Limits, Sandbox, SandboxError  # noqa: E402

llm = sibling(__file__, "llm")
generations = sibling(__file__, "generations")

DEFAULT_META_EVERY = 3
HISTORY_IN_CONTEXT = 6          # attempts the task agent is given
ITERATIONS_IN_CONTEXT = 60      # inner iterations the meta-agent is given (the most recent)
# LLM time does not count against call_timeout (it is spent in the broker, in this process); the session
# limit does, so it is generous for a slow local model.
AGENT_LIMITS = Limits(call_timeout=60.0, load_timeout=20.0, total_timeout=3600.0, cpu_seconds=60, memory_mb=1024)


def add_level_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meta-every", type=_positive_int, default=DEFAULT_META_EVERY, metavar="K",
                        help=f"rewrite the agents every K inner iterations (default {DEFAULT_META_EVERY})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of iterations, 1 or more; got {text!r}")
    return value


@dataclass
class AgentReply:
    """What run.propose() needs from a reply: the task agent's text, and whether the model cut it off."""
    text: str
    truncated: bool


class HyperAgentLoop:
    level = "hyperagent"

    def start(self, run: Run) -> dict:
        state = {"meta_every": _meta_every(run), "generations": [generations.seed_generation()], "current": 0,
                 "since_rewrite": 0, "attempts": [], "last_error": "", "last_rejection": ""}
        generations.sync_folders(run.directory, state["generations"], state["current"])
        return state

    def iterate(self, run: Run, state: dict, index: int) -> Iteration:
        generations.sync_folders(run.directory, state["generations"], state["current"])  # the state is the truth
        if state["since_rewrite"] >= _meta_every(run):
            self.outer_step(run, state, index)
        running = state["current"]  # the inner step may revert a generation that fails when run
        iteration = self.inner_step(run, state, index)
        iteration.extra = {"generation": running}
        newest = state["generations"][-1]
        if newest["created_before_iteration"] == index:  # from the state: also right when resumed after the rewrite
            iteration.extra["rewrite"] = {"generation": newest["generation"], "parent": newest["parent"],
                                          "status": newest["status"], "stage": newest["validation"]["stage"]}
        return iteration

    # ----- outer loop: one rewrite, one generation -----------------------------------------------------
    def outer_step(self, run: Run, state: dict, index: int) -> None:
        run.client.check_budget()
        known = state["generations"]
        parent_number, selection = generations.select_parent(known, run.task)
        parent = known[parent_number]
        number = len(known)
        session = llm.BrokerSession(run.client, llm.META_AGENT_ROLE)
        output, problem = None, None
        try:  # the parent's own meta-agent rewrites the parent (its folder was synced from the state just now)
            parent_folder = run.directory / "generations" / generations.folder_name(parent_number)
            output = run_agent(parent_folder / "meta_agent.py", "rewrite",
                               meta_context(run, state, parent, number, index), session)
            session.stop_if_budget_refused()
            sources = generations.apply_rewrite(output, parent["sources"])
        except SandboxError as error:
            session.stop_if_budget_refused()
            problem = generations.RewriteProblem("failed", "run", f"the meta-agent failed: {error.status}: "
                                                                  f"{error.message}")
        except generations.RewriteProblem as rejected:
            problem = rejected
        reason = output.get("reason") if isinstance(output, dict) and isinstance(output.get("reason"), str) else ""
        if problem is None:
            generation = generations.new_generation(number, parent_number, index, "valid", reason, sources,
                                                    parent["sources"], "", selection["because"])
        else:
            generation = generations.new_generation(
                number, parent_number, index, problem.status, reason, problem.sources,
                parent["sources"] if problem.sources else {}, problem.reason, selection["because"],
                stage=problem.stage, refused=problem.refused)
        generation["selection"] = {"scores": selection["scores"], "excluded": selection["excluded"]}
        # from here on the state changes; nothing above did (but refresh the derived versus_parent fields)
        known.append(generation)
        state["current"] = number if problem is None else parent_number
        state["last_rejection"] = "" if problem is None else \
            f"gen_{number:03d} was {problem.status} at stage {problem.stage}: {problem.reason}" + \
            (f" (its reason was: {reason[:200]})" if reason else "")
        state["since_rewrite"] = 0
        generations.sync_folders(run.directory, known, state["current"])
        run.checkpoint()

    # ----- inner loop: one proposal, scored, kept if better -------------------------------------------
    def inner_step(self, run: Run, state: dict, index: int) -> Iteration:
        run.client.check_budget()
        best_code = run.best_code
        session = llm.BrokerSession(run.client, llm.TASK_AGENT_ROLE)
        try:
            text = run_agent(run.directory / "agent_code" / "task_agent.py", "propose",
                             task_context(run, state, index), session)
        except SandboxError as error:
            session.stop_if_budget_refused()
            message = f"the task agent failed: {error.status}: {error.message}"[:600]
            iteration = self._record(run, state, index, None, False, f"rejected:agent_{error.status}", message,
                                     f"agent failure ({error.status})")
            self._revert_broken_generation(run, state, message)
            return iteration
        session.stop_if_budget_refused()
        if not isinstance(text, str):
            message = f"the task agent's propose() must return text, it returned {type(text).__name__}"
            return self._record(run, state, index, None, False, "rejected:agent_invalid_output", message,
                                "agent returned no text")
        try:
            code = run.propose(AgentReply(text, session.was_truncated(text)), best_code)
        except CandidateRejected as rejected:
            return self._record(run, state, index, None, False, f"rejected:{rejected.kind}", rejected.message,
                                f"unusable answer ({rejected.kind})")
        result = run.evaluate(code, index)
        accepted = result.ok and run.task.is_better(result.metric, run.best_metric)
        if accepted:
            run.accept(code, result.metric)
        error = "" if accepted else failure_feedback(run.task, result, run.best_metric)
        iteration = self._record(run, state, index, result.metric, accepted, result.status, error,
                                 summarize_change(best_code, code))
        iteration.note, iteration.benchmark_s = result.message, result.duration_s
        return iteration

    def _revert_broken_generation(self, run: Run, state: dict, message: str) -> None:
        """A rewritten task agent that passed the three static stages but fails when run is broken too: the live
        code goes back to its parent now, rather than failing every iteration until the next rewrite."""
        current = state["generations"][state["current"]]
        if current["parent"] is None:
            return  # the seed agent: nothing to go back to
        current["status"] = "failed"
        current["validation"] = {"ok": False, "stage": "run", "reason": message}
        state["current"] = current["parent"]
        state["last_rejection"] = (f"gen_{current['generation']:03d} passed validation but its task agent failed "
                                   f"when run: {message}")
        generations.sync_folders(run.directory, state["generations"], state["current"])

    def _record(self, run: Run, state: dict, index: int, metric, accepted: bool, status: str, error: str,
                summary: str) -> Iteration:
        current = state["generations"][state["current"]]
        state["last_error"] = error
        state["attempts"].append({"iteration": index, "generation": state["current"], "summary": summary,
                                  "metric": metric, "accepted": accepted, "status": status})
        generations.record_inner_result(current, {"iteration": index, "metric": metric, "accepted": accepted,
                                                  "status": status}, state["generations"], run.task)
        state["since_rewrite"] += 1
        generations.sync_folders(run.directory, state["generations"], state["current"])
        return Iteration(metric, accepted, status, note=error)


def _meta_every(run: Run) -> int:
    return getattr(run.args, "meta_every", DEFAULT_META_EVERY)


def run_agent(path: Path, function: str, context: dict, session) -> object:
    """One call of a contained agent; its only way out is the LLM broker of `session`."""
    with Sandbox(path, limits=AGENT_LIMITS, host_functions=session.host_functions()) as box:
        return box.call(function, context)


# ----- what the agents are given (plain data only) ----------------------------------------------------
def task_context(run: Run, state: dict, index: int) -> dict:
    history = [{key: attempt[key] for key in ("iteration", "summary", "metric", "accepted")}
               for attempt in state["attempts"][-HISTORY_IN_CONTEXT:]]
    return {"task_prompt": run.task.build_prompt(run.best_code, run.best_metric), "history": history,
            "last_error": state["last_error"], "edit_format": describe_edit_format(),
            "metric_name": run.task.metric_name, "iteration": index, "generation": state["current"]}


def meta_context(run: Run, state: dict, parent: dict, number: int, index: int) -> dict:
    usage, args = run.client.usage(), run.args
    budget = {"iterations_done": index - 1, "iterations_total": args.iters, "iterations_left": args.iters - index + 1,
              "meta_every": _meta_every(run), "llm_calls_used": usage["calls"],
              "llm_calls_left": None if args.max_calls is None else max(0, args.max_calls - usage["calls"]),
              "cost_used_usd": round(usage["cost_usd"], 6),
              "cost_left_usd": None if args.max_cost is None else round(max(0.0, args.max_cost - usage["cost_usd"]), 6)}
    summaries = [{"generation": g["generation"], "parent": g["parent"], "status": g["status"], "score": g["score"],
                  "versus_parent": g["versus_parent"], "reason": g["reason"],
                  "rejection": g["validation"]["reason"], "inner_iterations": len(g["inner_results"])}
                 for g in state["generations"]]
    task = run.task
    return {"task": {"name": task.name, "metric_name": task.metric_name, "higher_is_better": task.higher_is_better,
                     "required_functions": task.required_functions},
            "generation": parent["generation"], "new_generation": number, "sources": dict(parent["sources"]),
            "evaluation": {"initial_metric": run.state["initial_metric"], "best_metric": run.best_metric,
                           "iterations": state["attempts"][-ITERATIONS_IN_CONTEXT:], "generations": summaries,
                           "last_failure": state["last_error"]},
            "budget": budget, "last_rejection": state["last_rejection"], "edit_format": describe_edit_format()}
