"""The trusted reference player: confirms that an arena scenario's min_apples is reachable.

Trusted code: it runs in the benchmark's own process and is never copied into a sandbox.
Strategy: take the shortest path to the food when, after eating, the head can still reach the tail;
otherwise chase the tail by its longest first step; otherwise move to the largest open region.
Ties break in the fixed order of MOVE_ORDER, so the player is deterministic.
"""
from __future__ import annotations

from collections import deque

from tasks.snake.game import MOVES, SnakeGame, play_game

MOVE_ORDER = ("UP", "RIGHT", "DOWN", "LEFT")


def _neighbours(cell, width, height):
    x, y = cell
    for move in MOVE_ORDER:
        dx, dy = MOVES[move]
        nx, ny = x + dx, y + dy
        if 0 <= nx < width and 0 <= ny < height:
            yield move, (nx, ny)


def _bfs_path(start, goal, blocked, width, height):
    """Shortest list of cells from start (exclusive) to goal, or None."""
    parents = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = []
            while cell != start:
                path.append(cell)
                cell = parents[cell]
            return path[::-1]
        for _, nxt in _neighbours(cell, width, height):
            if nxt not in parents and (nxt == goal or nxt not in blocked):
                parents[nxt] = cell
                queue.append(nxt)
    return None


def _region_size(start, blocked, width, height):
    seen = {start}
    queue = deque([start])
    while queue:
        for _, nxt in _neighbours(queue.popleft(), width, height):
            if nxt not in seen and nxt not in blocked:
                seen.add(nxt)
                queue.append(nxt)
    return len(seen)


def _tail_reachable_after(snake, path, food, width, height):
    """Would the head still reach the tail after following `path` (which ends on the food)?"""
    body = list(snake)
    for cell in path:
        body.insert(0, cell)
        if cell != food:
            body.pop()
    if len(body) == width * height:
        return True
    return _bfs_path(body[0], body[-1], set(body[1:-1]), width, height) is not None


def reference_move(state: dict) -> str:
    width, height = state["width"], state["height"]
    snake = [tuple(cell) for cell in state["snake"]]
    food = tuple(state["food"])
    head, tail = snake[0], snake[-1]
    body_that_stays = set(snake[:-1])  # the tail moves away this step

    path = _bfs_path(head, food, body_that_stays, width, height)
    if path and _tail_reachable_after(snake, path, food, width, height):
        return _move_between(head, path[0])

    best_move, best_key = None, None
    for move, cell in _neighbours(head, width, height):
        if cell in body_that_stays:
            continue
        if cell == food:
            continue  # eating here failed the safety check above
        moved = [cell] + snake[:-1]
        to_tail = _bfs_path(cell, moved[-1], set(moved[1:-1]), width, height)
        # Prefer keeping the tail reachable, then the longest way to it (wastes time safely),
        # then the largest open region.
        key = (to_tail is not None, len(to_tail) if to_tail else 0,
               _region_size(cell, set(moved[1:]), width, height))
        if best_key is None or key > best_key:
            best_move, best_key = move, key
    if best_move is not None:
        return best_move
    if path:
        return _move_between(head, path[0])
    return state["direction"]  # boxed in: any move loses


def _move_between(start, end):
    delta = (end[0] - start[0], end[1] - start[1])
    return next(move for move, step in MOVES.items() if step == delta)


def reference_apples(case: dict) -> SnakeGame:
    """Play the reference player from a scenario's layout until min_apples or the game's end."""
    game = SnakeGame.from_scenario(case)
    return play_game(game, reference_move, target_apples=case["min_apples"])


def reference_shortfall(case: dict) -> str | None:
    """None when the reference player reaches min_apples from this (legal) layout, else why not."""
    game = reference_apples(case)
    if game.apples < case["min_apples"]:
        return (f"the reference player ate only {game.apples} of min_apples={case['min_apples']} "
                f"from this layout (its game ended by {game.end_cause}); lower min_apples")
    return None
