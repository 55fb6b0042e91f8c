"""Level 1's one role: the researcher, who proposes a change to the best code so far.

The prompt is built for a weak local model: the task, the current best code and its score, a short record of
what was tried (so it does not repeat itself), the error of the last attempt, and a request for small
SEARCH/REPLACE edits rather than a whole file.
"""
from __future__ import annotations

from pathlib import Path

from tasks.code_edits import describe_edit_format

TEMPLATE = (Path(__file__).with_name("prompt.txt")).read_text()
HISTORY_SHOWN = 6          # attempts listed in the prompt; older ones are dropped so the prompt stays short
MAX_TOKENS = 800           # one rewritten function fits; a weak model that rambles is cut off sooner
TEMPERATURE = 0.7


def history_lines(attempts: list[dict], metric_name: str) -> str:
    if not attempts:
        return ""
    lines = ["What was tried so far (most recent last):"]
    for attempt in attempts[-HISTORY_SHOWN:]:
        score = "no score" if attempt["metric"] is None else f"{metric_name} {attempt['metric']:g}"
        verdict = "kept" if attempt["accepted"] else "reverted"
        lines.append(f"- attempt {attempt['iteration']}: {attempt['summary']} -> {score}, {verdict}")
    return "\n".join(lines) + "\n\n"


def researcher_prompt(task_prompt: str, attempts: list[dict], last_error: str, metric_name: str) -> str:
    error = f"The last attempt failed: {last_error}\n\n" if last_error else ""
    return (TEMPLATE.replace("{history}", history_lines(attempts, metric_name))
            .replace("{last_error}", error)
            .replace("{edit_format}", describe_edit_format())
            .replace("{task_prompt}", task_prompt.rstrip()))
