"""Short, model-readable descriptions of an attempt: what changed, and why it did not help.

Shared by every level: level 1 shows them in its history, level 2's reviewer reads them in full.
Kept short on purpose; a 0.5B model loses the thread in long prompts.
"""
from __future__ import annotations

import difflib
import json

from tasks.task_runner import RunResult, Task

SUMMARY_CHARS = 120
DETAILS_CHARS = 600
TAIL_LINES = 6
BULKY_DETAILS = {"apples_per_game", "suites", "answers", "per_question"}  # numbers a model cannot act on


def summarize_change(old: str, new: str) -> str:
    """One line: which lines changed and the first changed line of the new code."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    changes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not changes:
        return "no change"
    first = changes[0]
    shown = next((line.strip() for line in new_lines[first[3]:first[4]] if line.strip()), "(deleted lines)")
    where = f"lines {first[3] + 1}-{max(first[4], first[3] + 1)}"
    more = f" and {len(changes) - 1} more place(s)" if len(changes) > 1 else ""
    return f"changed {where}{more}: {shown}"[:SUMMARY_CHARS]


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def failure_feedback(task: Task, result: RunResult, best_metric: float | None) -> str:
    """Why an evaluated candidate was not kept, in a few lines an LLM can act on."""
    if not result.ok:
        parts = [f"status {result.status}: {result.message.strip()[:400]}"]
        if result.stderr_tail.strip():
            parts.append("its stderr ended with:\n" + tail(result.stderr_tail))
        return "\n".join(parts)
    direction = "higher" if task.higher_is_better else "lower"
    parts = [f"it scored {task.metric_name} {result.metric:g}, not better than {best_metric:g} ({direction} is better)"]
    hints = {k: v for k, v in result.details.items() if k not in BULKY_DETAILS}
    if hints:
        parts.append("details: " + json.dumps(hints, ensure_ascii=False)[:DETAILS_CHARS])
    return "\n".join(parts)
