"""Score a snake solution: mean apples eaten over GAME_SEEDS, each game from the standard layout.

    python tasks/snake/benchmark.py SOLUTION [--tests FILE ...]

Deterministic: the engine draws food from random.Random(seed), so the same solution scores the
same every run. Time bound: a game lasts at most step_cap(10, 10) = 5000 moves, so a run makes at most
20 * 5000 = 100,000 choose_move calls. Measured at ~70 us per move (sandbox round trip plus engine), a
solution that plays every game to the cap takes ~7 s (a board-filling Hamiltonian player: 49,382 moves
in 3.4 s; the initial solution: 0.1 s). The solution's own thinking is capped by the worker's CPU limit
(WORKER_CPU_SECONDS) and the whole session by RUN_TIMEOUT_SECONDS, so no run lasts past ~60 s, plus
SCENARIO_SECONDS per --tests scenario (each at most 50 * 144 = 7,200 moves). Measured on a loaded
2-core machine: 10 ms of CPU per move stopped as "timeout" (CPU) after 59 s; a 50 ms sleep per move
stopped as "timeout" (wall clock) after 60 s.

With --tests, each file's scenarios are played from their own layouts; a scenario passes when the
solution eats at least min_apples before its game ends. The printed metric stays the mean apples on
the original games (a pass rate and a mean of apples are not on one scale); each file's pass rate is
in details["suites"].
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.benchmark_cli import load_test_suites, main  # noqa: E402
from tasks.sandbox import CandidateException, Limits, Sandbox, SandboxError  # noqa: E402
from tasks.snake.config import METRIC_NAME, case_problem  # noqa: E402
from tasks.snake.game import MOVES, SnakeGame, SolutionRaised, play_game  # noqa: E402

GAME_SEEDS = range(20)
MOVE_TIMEOUT_SECONDS = 1.0   # one move; a BFS on a 12x12 board takes well under a millisecond
WORKER_CPU_SECONDS = 30      # the whole run's CPU in the worker, bounding per-move thinking; stated in prompt.txt
RUN_TIMEOUT_SECONDS = 60     # wall clock for the whole session, a backstop over the CPU limit
SCENARIO_SECONDS = 1         # added to both budgets per --tests scenario (~0.5 s at its move cap)
MAX_EXAMPLES = 3             # game endings / failed scenarios quoted in details


def sandbox_mover(box: Sandbox, label: str):
    """choose_move for play_game: asks the sandbox, checks the type on this side."""
    def choose_move(state: dict):
        try:
            move = box.call("choose_move", state)
        except CandidateException as exc:
            raise SolutionRaised(exc.message) from None
        if not isinstance(move, str):
            raise SandboxError(
                "invalid_output",
                f"choose_move must return one of the strings {', '.join(MOVES)}; it returned "
                f"{type(move).__name__} {json.dumps(move)[:80]} ({label}, step {state['steps']})")
        return move
    return choose_move


def play_original_games(box: Sandbox) -> dict:
    apples, endings, examples, first_exception = [], Counter(), [], None
    for seed in GAME_SEEDS:
        game = play_game(SnakeGame.standard(seed), sandbox_mover(box, f"game seed {seed}"))
        apples.append(game.apples)
        endings[game.end_cause] += 1
        if game.end_cause == "exception" and first_exception is None:
            first_exception = game.end_note[:300]
        if game.end_note and game.end_cause != "exception" and len(examples) < MAX_EXAMPLES:
            examples.append(f"seed {seed}: {game.end_cause} at step {game.steps} "
                            f"after {game.apples} apples: {game.end_note}")
    details = {
        "apples_per_game": apples,
        "endings": dict(sorted(endings.items())),
        "examples": examples,
    }
    if first_exception is not None:
        details["first_exception"] = first_exception
    return details


def play_scenarios(box: Sandbox, suite_name: str, cases: list, failures: list) -> dict:
    passed = 0
    for index, case in enumerate(cases):
        mover = sandbox_mover(box, f"{suite_name} case {index}")
        game = play_game(SnakeGame.from_scenario(case), mover, target_apples=case["min_apples"])
        if game.apples >= case["min_apples"]:
            passed += 1
        elif len(failures) < MAX_EXAMPLES:
            failures.append({"suite": suite_name, "case": index, "min_apples": case["min_apples"],
                             "apples": game.apples, "ended_by": game.end_cause,
                             "note": game.end_note[:200]})
    total = len(cases)
    return {"passed": passed, "total": total, "score": 100.0 * passed / total if total else 0.0}


def evaluate(solution_path, args) -> dict:
    suites_to_play = load_test_suites(args.tests or [], validate_case=case_problem)
    scenario_budget = SCENARIO_SECONDS * sum(len(cases) for cases in suites_to_play.values())
    limits = Limits(call_timeout=MOVE_TIMEOUT_SECONDS, cpu_seconds=WORKER_CPU_SECONDS + scenario_budget,
                    total_timeout=RUN_TIMEOUT_SECONDS + scenario_budget)
    with Sandbox(solution_path, limits=limits) as box:
        box.require("choose_move")
        details = play_original_games(box)
        mean_apples = sum(details["apples_per_game"]) / len(details["apples_per_game"])
        # A scored game "passes" when the snake fills the board; its score is the mean apples.
        details["suites"] = {"original": {"passed": details["endings"].get("board_full", 0),
                                          "total": len(GAME_SEEDS), "score": mean_apples}}
        failures: list = []
        for suite_name, cases in suites_to_play.items():  # never "original": load_test_suites sees to that
            details["suites"][suite_name] = play_scenarios(box, suite_name, cases, failures)
        if failures:
            details["scenario_failures"] = failures
    return {"metric": mean_apples, "details": details}


if __name__ == "__main__":
    main(evaluate, METRIC_NAME)
