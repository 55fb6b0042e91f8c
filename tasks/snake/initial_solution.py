"""Snake player: choose_move(state) returns the next move.

state is a dict:
    "width", "height": board size in cells (the benchmark uses 10 x 10)
    "snake":     list of [x, y] cells, head first, tail last (starts with length 3)
    "direction": the last move made, one of "UP", "DOWN", "LEFT", "RIGHT"
    "food":      [x, y] of the apple
    "score":     apples eaten so far
    "steps":     moves made so far
x grows to the right (0 .. width-1), y grows downward (0 .. height-1):
"UP" is y-1, "DOWN" is y+1, "LEFT" is x-1, "RIGHT" is x+1.
Return exactly one of the strings "UP", "DOWN", "LEFT", "RIGHT".

This baseline walks straight toward the food and never looks at its own body.
"""


def choose_move(state):
    head_x, head_y = state["snake"][0]
    food_x, food_y = state["food"]
    if food_x > head_x:
        return "RIGHT"
    if food_x < head_x:
        return "LEFT"
    if food_y > head_y:
        return "DOWN"
    return "UP"
