"""Watch a snake solution play one game in the terminal.

    python tasks/snake/play.py SOLUTION [--speed 0.05] [--seed N]

q or Ctrl+C stops it. The solution runs in the sandbox, exactly as the benchmark runs it. When stdout
or stdin is not a terminal (a pipe, a test), no frames are animated: the game runs at full speed and
only the final board and the final line are printed.
"""
from __future__ import annotations

import argparse
import select
import sys
import termios
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.sandbox import Limits, Sandbox, SandboxError  # noqa: E402
from tasks.snake.benchmark import MOVE_TIMEOUT_SECONDS, sandbox_mover  # noqa: E402
from tasks.snake.game import SnakeGame, play_game  # noqa: E402

CLEAR_SCREEN = "\x1b[H\x1b[2J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
QUIT_KEYS = {"q", "Q"}
WATCH_TIMEOUT_SECONDS = 24 * 3600.0  # the session's wall clock: a person may watch slowly


class QuitRequested(Exception):
    pass


def render(game: SnakeGame, seed: int) -> str:
    body = set(game.snake[1:])
    rows = ["+" + "-" * game.width + "+"]
    for y in range(game.height):
        row = ""
        for x in range(game.width):
            if (x, y) == game.snake[0]:
                row += "@"
            elif (x, y) in body:
                row += "o"
            elif game.food is not None and (x, y) == game.food:
                row += "*"
            else:
                row += " "
        rows.append("|" + row + "|")
    rows.append(rows[0])
    rows.append(f"seed {seed}   apples {game.apples}   step {game.steps}")
    return "\n".join(rows)


def final_line(game: SnakeGame) -> str:
    how = "stopped by the user" if game.end_cause == "quit" else f"game over: {game.end_cause}"
    note = f" ({game.end_note})" if game.end_note else ""
    return f"{how}{note} after {game.steps} steps; apples: {game.apples}"


def key_pressed(timeout: float) -> str | None:
    """Wait up to `timeout` seconds for a key; the pause doubles as the frame delay."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return sys.stdin.read(1) if ready else None


def play_interactive(game: SnakeGame, mover, seed: int, speed: float) -> None:
    def after_step(game: SnakeGame):
        sys.stdout.write(CLEAR_SCREEN + render(game, seed) + "\n  q quits\n")
        sys.stdout.flush()
        if key_pressed(speed) in QUIT_KEYS:
            raise QuitRequested

    saved_terminal = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin)  # keys arrive one at a time; Ctrl+C still raises KeyboardInterrupt
        sys.stdout.write(HIDE_CURSOR)
        after_step(game)
        play_game(game, mover, after_step=after_step)
    except (QuitRequested, KeyboardInterrupt):
        game.end("quit")
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved_terminal)
        sys.stdout.write(SHOW_CURSOR)
        sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Watch a snake solution play one game.")
    parser.add_argument("solution", help="path to the solution file (defines choose_move(state))")
    parser.add_argument("--speed", type=float, default=0.05, help="seconds between frames (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="food seed of the game (default 0)")
    args = parser.parse_args(argv)
    if args.speed < 0:
        parser.error("--speed must be 0 or more seconds")

    game = SnakeGame.standard(args.seed)
    interactive = sys.stdout.isatty() and sys.stdin.isatty()
    limits = Limits(call_timeout=MOVE_TIMEOUT_SECONDS, total_timeout=WATCH_TIMEOUT_SECONDS)
    try:
        with Sandbox(args.solution, limits=limits) as box:
            box.require("choose_move")
            mover = sandbox_mover(box, f"seed {args.seed}")
            if interactive:
                play_interactive(game, mover, args.seed, args.speed)
            else:
                play_game(game, mover)
                print(render(game, args.seed))
    except KeyboardInterrupt:
        game.end("quit")
    except SandboxError as error:
        print(f"the solution failed: {error.status}: {error.message}")
        print(f"apples: {game.apples}")
        return 1
    print(final_line(game))
    return 0

if __name__ == "__main__":
    sys.exit(main())
