"""The trusted snake engine, shared by benchmark.py, play.py and the arena's reference check.

Coordinates: x grows to the right, y grows downward; "UP" is y-1. The snake is a list of [x, y]
cells, head first. All randomness comes from `random.Random(seed)`, so a game is a pure function
of its starting layout, its seed and the moves it is given.

Rules (also stated in prompt.txt, keep them in sync):
- each step the head moves one cell in the chosen direction; eating the food grows the snake by one
  and a new food appears on a random free cell;
- moving into the cell the tail is leaving is allowed; moving into any other body cell (including
  reversing into the neck) is a "body" collision; leaving the grid is a "wall" collision;
- a move that is not exactly "UP", "DOWN", "LEFT" or "RIGHT" ends the game ("invalid_move");
- STARVATION_STEPS(width, height) steps in a row without food end the game ("starvation");
- a game lasts at most STEP_CAP(width, height) steps ("step_cap");
- filling the whole board ends the game as a win ("board_full").
"""
from __future__ import annotations

import random
from typing import Callable

BOARD_WIDTH = 10
BOARD_HEIGHT = 10
START_LENGTH = 3

MOVES = {"UP": (0, -1), "DOWN": (0, 1), "LEFT": (-1, 0), "RIGHT": (1, 0)}

# Every way a game can end; the benchmark counts games by these.
END_CAUSES = ("wall", "body", "invalid_move", "exception", "starvation", "step_cap",
              "board_full", "target_reached")


def starvation_steps(width: int, height: int) -> int:
    # One full tour of the board: a snake following a Hamiltonian cycle always reaches the food
    # in fewer steps, so this never starves a sound strategy, only a looping one.
    return width * height


def step_cap(width: int, height: int) -> int:
    # A snake on a Hamiltonian cycle needs at most (free cells) steps per apple, so filling the board
    # takes at most sum(1..cells) ~ cells^2/2 steps: the board maximum stays reachable under this cap.
    cells = width * height
    return cells * cells // 2


class SnakeGame:
    """One game. `step(move)` advances it; `over` / `end_cause` say when and why it stopped."""

    def __init__(self, width: int, height: int, snake: list, direction: str, food: list | None,
                 seed: int):
        self.width = width
        self.height = height
        self.snake = [tuple(cell) for cell in snake]
        self.direction = direction
        self.rng = random.Random(seed)
        self.apples = 0
        self.steps = 0
        self.steps_since_food = 0
        self.end_cause: str | None = None
        self.end_note = ""
        self.food = tuple(food) if food is not None else self._place_food()

    @classmethod
    def standard(cls, seed: int, width: int = BOARD_WIDTH, height: int = BOARD_HEIGHT) -> "SnakeGame":
        """The benchmark's starting layout: length 3 in the middle, heading right, seeded food."""
        head_x, head_y = width // 2, height // 2
        snake = [[head_x - i, head_y] for i in range(START_LENGTH)]
        return cls(width, height, snake, "RIGHT", None, seed)

    @classmethod
    def from_scenario(cls, case: dict) -> "SnakeGame":
        return cls(case["width"], case["height"], case["snake"], case["direction"], case["food"],
                   case["seed"])

    @property
    def over(self) -> bool:
        return self.end_cause is not None

    def state(self) -> dict:
        """What the solution sees: plain JSON data, a fresh copy each call."""
        return {
            "width": self.width,
            "height": self.height,
            "snake": [list(cell) for cell in self.snake],
            "direction": self.direction,
            "food": list(self.food) if self.food is not None else None,
            "score": self.apples,
            "steps": self.steps,
        }

    def end(self, cause: str, note: str = "") -> None:
        self.end_cause = cause
        self.end_note = note

    def step(self, move) -> str | None:
        """Apply one move; returns the end cause if this move ended the game, else None."""
        if self.over:
            raise RuntimeError("the game is already over")
        if not isinstance(move, str) or move not in MOVES:
            self.end("invalid_move", f"got {repr(move)[:60]}")  # cut: a candidate may return a huge string
            return self.end_cause
        dx, dy = MOVES[move]
        head_x, head_y = self.snake[0]
        new_head = (head_x + dx, head_y + dy)
        self.steps += 1
        self.direction = move
        if not (0 <= new_head[0] < self.width and 0 <= new_head[1] < self.height):
            self.end("wall", f"moved {move} from {[head_x, head_y]} off the board")
            return self.end_cause
        eats = new_head == self.food
        # The tail vacates its cell this step unless the snake grows, so the head may take it.
        body_after_move = self.snake if eats else self.snake[:-1]
        if new_head in body_after_move:
            self.end("body", f"moved {move} from {[head_x, head_y]} into its own body")
            return self.end_cause
        self.snake = [new_head] + body_after_move
        if eats:
            self.apples += 1
            self.steps_since_food = 0
            if len(self.snake) == self.width * self.height:
                self.food = None
                self.end("board_full")
                return self.end_cause
            self.food = self._place_food()
        else:
            self.steps_since_food += 1
            if self.steps_since_food >= starvation_steps(self.width, self.height):
                self.end("starvation", f"{self.steps_since_food} steps without food")
                return self.end_cause
        if self.steps >= step_cap(self.width, self.height):
            self.end("step_cap", f"reached the {self.steps}-step cap")
        return self.end_cause

    def _place_food(self) -> tuple:
        occupied = set(self.snake)
        free = [(x, y) for y in range(self.height) for x in range(self.width) if (x, y) not in occupied]
        return self.rng.choice(free)


class SolutionRaised(Exception):
    """Raised by a move source when the solution's choose_move raised; ends the game as "exception"."""


def play_game(game: SnakeGame, choose_move: Callable[[dict], object], target_apples: int | None = None,
              after_step: Callable[[SnakeGame], None] | None = None) -> SnakeGame:
    """Run `game` to its end, asking `choose_move(state)` for every move.

    `choose_move` may raise SolutionRaised (the game ends as "exception"); any other exception
    propagates. With `target_apples`, the game stops as "target_reached" once that many apples are eaten.
    """
    while not game.over:
        if target_apples is not None and game.apples >= target_apples:
            game.end("target_reached")
            break
        try:
            move = choose_move(game.state())
        except SolutionRaised as exc:
            game.end("exception", str(exc))
            break
        game.step(move)
        if after_step is not None:
            after_step(game)
    return game


def layout_problem(case: dict) -> str | None:
    """Why a scenario's starting layout is not a legal snake position, or None when it is."""
    width, height = case["width"], case["height"]
    snake = [tuple(cell) for cell in case["snake"]]
    if len(snake) < 2:
        return "the snake needs at least 2 cells (a head and a neck)"
    for x, y in snake + [tuple(case["food"])]:
        if not (0 <= x < width and 0 <= y < height):
            return f"cell {[x, y]} is outside the {width}x{height} board"
    if len(set(snake)) != len(snake):
        return "the snake overlaps itself"
    for (ax, ay), (bx, by) in zip(snake, snake[1:]):
        if abs(ax - bx) + abs(ay - by) != 1:
            return f"the snake is not contiguous between {[ax, ay]} and {[bx, by]}"
    if tuple(case["food"]) in set(snake):
        return "the food is on the snake"
    if len(snake) >= width * height:
        return "the snake already fills the board"
    (hx, hy), (nx, ny) = snake[0], snake[1]
    if MOVES.get(case["direction"]) != (hx - nx, hy - ny):
        return (f"direction {case['direction']!r} does not match the head {[hx, hy]} "
                f"and neck {[nx, ny]} (it must point from the neck to the head)")
    if case["min_apples"] > width * height - len(snake):
        return f"min_apples {case['min_apples']} is more than the free cells on the board"
    return None
