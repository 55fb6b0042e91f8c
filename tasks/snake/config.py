"""The snake task: a `choose_move(state)` player scored by mean apples eaten over seeded games.

The rules live in game.py (the trusted engine) and are stated for the model in prompt.txt. The arena's
referee is reference_player.py, which runs only in trusted processes and is never put in a sandbox.
"""
from __future__ import annotations

from pathlib import Path


from tasks.snake.game import BOARD_HEIGHT, BOARD_WIDTH, MOVES, START_LENGTH, layout_problem
from tasks.snake.reference_player import reference_shortfall
from tasks.task_kit import fill_prompt, schema_problem

TASK_NAME = "snake"
METRIC_NAME = "mean_apples"
HIGHER_IS_BETTER = True
# Every seeded game can be won: a snake on a Hamiltonian cycle fills the 10x10 board within the step
# and starvation caps (tests/test_snake.py plays one through all seeds to prove it).
PERFECT_SCORE = float(BOARD_WIDTH * BOARD_HEIGHT - START_LENGTH)  # 97.0
# initial_solution.py scores 2.9 (58 apples over the 20 games; all 20 end by hitting its own body,
# 10 of them on the first step by reversing into its neck), measured with
# `python tasks/snake/benchmark.py tasks/snake/initial_solution.py`.
INITIAL_SOLUTION_MEAN_APPLES = 2.9

REQUIRED_FUNCTIONS = {"choose_move": ["state"]}

# Scenario bounds keep one arena case cheap: at most MAX_MIN_APPLES apples, each within
# width*height steps (the starvation cap), so a case costs at most 50 * 144 = 7200 moves.
MIN_SIDE, MAX_SIDE = 4, 12
MAX_MIN_APPLES = 50
_CELL = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}

CASE_SCHEMA = {
    "type": "object",
    "properties": {
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "width": {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE},
        "height": {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE},
        "snake": {"type": "array", "items": _CELL, "minItems": 2, "maxItems": MAX_SIDE * MAX_SIDE},
        "direction": {"type": "string", "enum": sorted(MOVES)},
        "food": _CELL,
        "min_apples": {"type": "integer", "minimum": 1, "maximum": MAX_MIN_APPLES},
    },
    "required": ["seed", "width", "height", "snake", "direction", "food", "min_apples"],
    "additionalProperties": False,
}

PROMPT_TEMPLATE = (Path(__file__).resolve().parent / "prompt.txt").read_text(encoding="utf-8")


def build_prompt(code: str, metric) -> str:
    return fill_prompt(PROMPT_TEMPLATE, code, "not measured yet" if metric is None else f"{metric:.2f} mean apples")


def case_problem(case) -> str | None:
    """Why a scenario cannot be played (wrong shape or an illegal layout), or None."""
    problem = schema_problem(case, CASE_SCHEMA)
    if problem:
        return problem
    # JSON Schema counts 6.0 as an integer; the engine needs real ints (board sizes feed range()).
    numbers = [case["seed"], case["width"], case["height"], case["min_apples"], *case["food"],
               *(value for cell in case["snake"] for value in cell)]
    if any(type(number) is not int for number in numbers):
        return "every number in a case must be a whole number written without a decimal point (6, not 6.0)"
    problem = layout_problem(case)
    return f"illegal layout: {problem}" if problem else None


def reference_check(case) -> str | None:
    """None when the layout is legal and the trusted reference player reaches min_apples from it."""
    return case_problem(case) or reference_shortfall(case)
