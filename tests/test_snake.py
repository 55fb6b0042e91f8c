"""snake: the engine's rules, the reference referee, the real benchmark CLI and play.py."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import run_benchmark_cli
from tasks.snake import config
from tasks.snake.benchmark import GAME_SEEDS, WORKER_CPU_SECONDS
from tasks.snake.game import SnakeGame, play_game, starvation_steps, step_cap
from tasks.task_runner import load_task, run_solution

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = REPO_ROOT / "tasks" / "snake"
BENCHMARK = TASK_DIR / "benchmark.py"
PLAY = TASK_DIR / "play.py"

BFS_SOLUTION = '''
from collections import deque

STEPS = {"UP": (0, -1), "DOWN": (0, 1), "LEFT": (-1, 0), "RIGHT": (1, 0)}


def choose_move(state):
    width, height = state["width"], state["height"]
    snake = [tuple(cell) for cell in state["snake"]]
    blocked = set(snake[:-1])
    head, food = snake[0], tuple(state["food"])
    first_move = {head: None}
    queue = deque([head])
    while queue:
        cell = queue.popleft()
        if cell == food:
            return first_move[cell]
        for move, (dx, dy) in STEPS.items():
            nxt = (cell[0] + dx, cell[1] + dy)
            if 0 <= nxt[0] < width and 0 <= nxt[1] < height and nxt not in blocked and nxt not in first_move:
                first_move[nxt] = first_move[cell] or move
                queue.append(nxt)
    for move, (dx, dy) in STEPS.items():
        nxt = (head[0] + dx, head[1] + dy)
        if 0 <= nxt[0] < width and 0 <= nxt[1] < height and nxt not in blocked:
            return move
    return "UP"
'''


def hamiltonian_move(state):
    """Follow a fixed Hamiltonian cycle that contains the standard start (row 5 is walked rightward):
    column width-1 leads back up; rows walk x = 0 .. width-2, even rows leftward, odd rows rightward."""
    (x, y), width, height = state["snake"][0], state["width"], state["height"]
    if x == width - 1:
        return "UP" if y > 0 else "LEFT"
    if y % 2 == 0:
        return "LEFT" if x > 0 else "DOWN"
    if x < width - 2:
        return "RIGHT"
    return "DOWN" if y < height - 1 else "RIGHT"


def run_benchmark(solution: Path, *suites: Path) -> dict:
    return run_benchmark_cli(BENCHMARK, solution, *suites)


def write_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def scenario(**overrides) -> dict:
    case = {"seed": 7, "width": 6, "height": 6, "snake": [[2, 2], [1, 2], [0, 2]], "direction": "RIGHT",
            "food": [4, 4], "min_apples": 5}
    case.update(overrides)
    return case


def game_from(snake, food, direction="RIGHT", width=6, height=6, seed=0) -> SnakeGame:
    return SnakeGame(width, height, snake, direction, food, seed)


# --- the engine ----------------------------------------------------------------------------------------

def test_standard_start_is_length_three_heading_right_with_seeded_food():
    game = SnakeGame.standard(4)
    assert game.snake == [(5, 5), (4, 5), (3, 5)] and game.direction == "RIGHT"
    assert game.food not in game.snake
    assert SnakeGame.standard(4).food == game.food  # same seed, same food
    assert len({SnakeGame.standard(seed).food for seed in GAME_SEEDS}) > 5


def test_moving_off_the_board_is_a_wall_collision():
    game = game_from([[5, 2], [4, 2], [3, 2]], food=[0, 0])
    assert game.step("RIGHT") == "wall"
    assert game.over and game.apples == 0


def test_reversing_into_the_neck_is_a_body_collision():
    game = game_from([[2, 2], [1, 2], [0, 2]], food=[5, 5])
    assert game.step("LEFT") == "body"


def test_running_into_the_body_is_a_body_collision():
    # Head at (2,2) with the body curling round it: moving DOWN hits (2,3).
    game = game_from([[2, 2], [1, 2], [1, 3], [2, 3], [3, 3]], food=[5, 5], direction="RIGHT")
    assert game.step("DOWN") == "body"


def test_the_head_may_take_the_cell_the_tail_is_leaving():
    # A 2x2 loop: the tail (2,3) moves away as the head arrives.
    game = game_from([[2, 2], [1, 2], [1, 3], [2, 3]], food=[5, 5], direction="RIGHT")
    assert game.step("DOWN") is None
    assert game.snake == [(2, 3), (2, 2), (1, 2), (1, 3)]


def test_eating_grows_the_snake_and_places_new_food_off_the_snake():
    game = game_from([[2, 2], [1, 2], [0, 2]], food=[3, 2])
    assert game.step("RIGHT") is None
    assert game.apples == 1 and len(game.snake) == 4 and game.snake[-1] == (0, 2)
    assert game.food not in game.snake and game.steps_since_food == 0


@pytest.mark.parametrize("move", ["up", "NORTH", "", " UP", 5, None])
def test_anything_but_the_four_move_strings_ends_the_game(move):
    game = game_from([[2, 2], [1, 2], [0, 2]], food=[5, 5])
    assert game.step(move) == "invalid_move"


def test_starvation_ends_a_game_that_circles_without_eating():
    # A 2x2 loop never reaches the food in the far corner.
    game = game_from([[0, 0], [0, 1], [1, 1]], food=[5, 5], direction="UP")
    loop = ["RIGHT", "DOWN", "LEFT", "UP"]
    while not game.over:
        game.step(loop[game.steps % 4])
    assert game.end_cause == "starvation"
    assert game.steps == starvation_steps(6, 6) == 36


def test_the_step_cap_ends_a_game_that_keeps_eating():
    game = SnakeGame.standard(0)
    game.steps = step_cap(10, 10) - 1  # as if the snake had survived this long
    assert game.step("RIGHT") == "step_cap"
    assert step_cap(10, 10) == 5000


def test_a_solution_that_raises_ends_its_game_as_exception():
    from tasks.snake.game import SolutionRaised

    def broken(state):
        raise SolutionRaised("ValueError: boom")

    game = play_game(SnakeGame.standard(0), broken)
    assert (game.end_cause, game.end_note, game.apples) == ("exception", "ValueError: boom", 0)


def test_perfect_score_is_reachable_on_every_benchmark_seed_within_the_caps():
    for seed in GAME_SEEDS:
        game = play_game(SnakeGame.standard(seed), hamiltonian_move)
        assert (game.end_cause, game.apples) == ("board_full", config.PERFECT_SCORE), f"seed {seed}"


# --- the arena referee ---------------------------------------------------------------------------------

def test_case_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(config.CASE_SCHEMA)
    jsonschema.validate(scenario(), config.CASE_SCHEMA)


def test_reference_check_accepts_a_legal_solvable_scenario():
    assert config.reference_check(scenario()) is None
    assert config.reference_check(scenario(width=12, height=12, min_apples=50)) is None


@pytest.mark.parametrize("overrides, expected_reason", [
    ({"snake": [[2, 2], [1, 2], [2, 2]]}, "overlaps itself"),
    ({"food": [1, 2]}, "food is on the snake"),
    ({"snake": [[1, 2], [0, 2], [-1, 2]], "direction": "RIGHT"}, "outside the 6x6 board"),
    ({"food": [6, 0]}, "outside the 6x6 board"),
    ({"snake": [[2, 2], [0, 2]]}, "not contiguous"),
    ({"direction": "UP"}, "does not match the head"),
    ({"width": 40}, "does not match CASE_SCHEMA"),
    ({"direction": "up"}, "does not match CASE_SCHEMA"),
    ({"width": 6.0}, "whole number"),
    ({"food": [4.0, 4]}, "whole number"),
    ({"min_apples": 34}, "more than the free cells"),
])
def test_reference_check_rejects_an_illegal_scenario_with_a_reason(overrides, expected_reason):
    reason = config.reference_check(scenario(**overrides))
    assert reason is not None and expected_reason in reason


def test_reference_check_rejects_a_target_the_reference_cannot_reach():
    small_board = scenario(width=4, height=4, snake=[[2, 1], [1, 1], [0, 1]], food=[3, 3], min_apples=13)
    assert config.reference_check(dict(small_board, seed=0)) is None      # the reference fills this board
    reason = config.reference_check(dict(small_board, seed=2))             # but starves on this seed
    assert reason and "the reference player ate only 11 of min_apples=13" in reason


def test_reference_check_rejects_a_snake_boxed_into_a_corner():
    trapped = scenario(snake=[[0, 0], [1, 0], [1, 1], [0, 1], [0, 2]], direction="LEFT", food=[5, 5], min_apples=1)
    reason = config.reference_check(trapped)
    assert reason and "ate only 0 of min_apples=1" in reason


# --- the benchmark CLI ---------------------------------------------------------------------------------

def test_initial_solution_scores_the_documented_value_every_time():
    first = run_benchmark(TASK_DIR / "initial_solution.py")
    second = run_benchmark(TASK_DIR / "initial_solution.py")
    assert first["status"] == "ok", first
    assert f"{config.METRIC_NAME}:{config.INITIAL_SOLUTION_MEAN_APPLES:g}" in first["stdout"].splitlines()
    assert first["metric"] == config.INITIAL_SOLUTION_MEAN_APPLES
    assert second["metric"] == first["metric"]
    assert first["details"] == second["details"]
    details = first["details"]
    assert len(details["apples_per_game"]) == len(GAME_SEEDS) >= 20
    assert sum(details["endings"].values()) == len(GAME_SEEDS)


def test_task_loads_and_run_solution_reads_the_benchmark(tmp_path):
    task = load_task("snake")
    assert task.perfect_score == config.PERFECT_SCORE
    run = run_solution(task, write_file(tmp_path / "bfs.py", BFS_SOLUTION))
    assert run.status == "ok", run.message
    assert run.metric > config.INITIAL_SOLUTION_MEAN_APPLES + 15  # BFS measured at 28.15


def test_build_prompt_shows_the_rules_the_code_and_the_metric():
    prompt = config.build_prompt("def choose_move(state):\n    return 'UP'\n", 2.9)
    assert "def choose_move(state):" in prompt and "2.90" in prompt
    assert '"UP" is y-1' in prompt and "97" in prompt
    assert "{code}" not in prompt and "{metric}" not in prompt
    assert f"at most {WORKER_CPU_SECONDS} seconds of CPU" in prompt  # the budget the benchmark enforces
    assert "not measured yet" in config.build_prompt("x = 1", None)


@pytest.mark.parametrize("code, status, message_part", [
    ("def choose_move(state)\n    return 'UP'\n", "load_error", "SyntaxError"),
    ("def pick(state):\n    return 'UP'\n", "missing_function", "choose_move"),
    ("def choose_move(state):\n    return 5\n", "invalid_output", "returned int 5"),
    ("def choose_move(state):\n    return ['UP']\n", "invalid_output", "returned list"),
])
def test_bad_solutions_get_a_clear_status(tmp_path, code, status, message_part):
    result = run_benchmark(write_file(tmp_path / "bad.py", code))
    assert result["status"] == status and message_part in result["message"], result["message"]
    assert result["metric"] is None
    assert "Traceback" not in result["stdout"] + result["stderr"]


def test_a_solution_that_raises_loses_each_game_with_its_message(tmp_path):
    code = "def choose_move(state):\n    raise ValueError('no idea where to go')\n"
    result = run_benchmark(write_file(tmp_path / "raises.py", code))
    assert result["status"] == "ok" and result["metric"] == 0.0
    assert result["details"]["endings"] == {"exception": len(GAME_SEEDS)}
    assert "ValueError: no idea where to go" in result["details"]["first_exception"]


def test_a_wrongly_spelled_move_ends_the_game_as_invalid_move(tmp_path):
    result = run_benchmark(write_file(tmp_path / "lower.py", "def choose_move(state):\n    return 'right'\n"))
    assert result["status"] == "ok" and result["metric"] == 0.0
    assert result["details"]["endings"] == {"invalid_move": len(GAME_SEEDS)}
    assert "got 'right'" in result["details"]["examples"][0]


def test_scenario_suites_are_scored_per_file_while_the_metric_stays_on_the_original_games(tmp_path):
    solvable = scenario(min_apples=3)
    # Food straight behind the head: the initial solution reverses into its neck.
    behind = scenario(snake=[[3, 2], [2, 2], [1, 2]], food=[0, 2], min_apples=1)
    suite = write_file(tmp_path / "arena_suite.json", json.dumps({"cases": [solvable, behind]}))
    assert config.reference_check(solvable) is None and config.reference_check(behind) is None

    bfs = run_benchmark(write_file(tmp_path / "bfs.py", BFS_SOLUTION), suite)
    assert bfs["status"] == "ok"
    assert bfs["details"]["suites"]["arena_suite.json"] == {"passed": 2, "total": 2, "score": 100.0}
    assert bfs["details"]["suites"]["original"]["score"] == bfs["metric"]

    initial = run_benchmark(TASK_DIR / "initial_solution.py", suite)
    assert initial["metric"] == config.INITIAL_SOLUTION_MEAN_APPLES  # unchanged by --tests
    suite_result = initial["details"]["suites"]["arena_suite.json"]
    assert suite_result["total"] == 2 and suite_result["passed"] < 2
    failure = initial["details"]["scenario_failures"][0]
    assert failure["suite"] == "arena_suite.json" and failure["ended_by"] == "body"


def test_an_illegal_scenario_file_is_a_clear_bad_input(tmp_path):
    suite = write_file(tmp_path / "bad_suite.json", json.dumps({"cases": [scenario(food=[2, 2])]}))
    result = run_benchmark(TASK_DIR / "initial_solution.py", suite)
    assert result["status"] == "bad_input"
    assert "case 0" in result["message"] and "food is on the snake" in result["message"]


# --- play.py -------------------------------------------------------------------------------------------

def test_play_prints_the_final_board_and_score_when_not_a_terminal():
    completed = subprocess.run([sys.executable, str(PLAY), str(TASK_DIR / "initial_solution.py"), "--seed", "19"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[-1] == "game over: body (moved LEFT from [5, 3] into its own body) after 141 steps; apples: 16"
    assert "seed 19   apples 16   step 141" in lines
    assert "\x1b[" not in completed.stdout  # no escape codes into a pipe


def test_play_reports_a_broken_solution_without_a_traceback(tmp_path):
    solution = write_file(tmp_path / "five.py", "def choose_move(state):\n    return 5\n")
    completed = subprocess.run([sys.executable, str(PLAY), str(solution)], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert completed.returncode == 1
    assert "the solution failed: invalid_output" in completed.stdout and "Traceback" not in completed.stderr


def test_play_in_a_terminal_animates_and_quits_on_q(tmp_path):
    import inspect
    import pty

    solution = write_file(tmp_path / "circler.py",
                          inspect.getsource(hamiltonian_move) + "\nchoose_move = hamiltonian_move\n")
    pid, terminal = pty.fork()
    if pid == 0:  # the child becomes play.py on a pseudo-terminal
        os.chdir(REPO_ROOT)
        os.execv(sys.executable, [sys.executable, str(PLAY), str(solution), "--speed", "0.05"])
    exit_code = None
    try:
        output = read_until(terminal, b"step 3", deadline=time.monotonic() + 30)
        os.write(terminal, b"q")
        output += read_until(terminal, b"apples:", deadline=time.monotonic() + 30)
        exit_code = wait_for_exit(pid, deadline=time.monotonic() + 30)
    finally:
        if exit_code is None:  # still running (or the test failed early): stop the child we started
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    text = output.decode("utf-8", "replace")
    assert "\x1b[H\x1b[2J" in text and "q quits" in text
    assert "stopped by the user after" in text
    assert exit_code == 0


def read_until(terminal: int, marker: bytes, deadline: float) -> bytes:
    output = b""
    while marker not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([terminal], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    return output


def wait_for_exit(pid: int, deadline: float) -> int | None:
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None
