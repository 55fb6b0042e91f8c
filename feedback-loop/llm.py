"""Level 2's role prompts. Asymmetric by design: the worker sees little, the reviewer sees everything.

worker:   the task, the current best code and its score, and the reviewer's latest feedback.
reviewer: the task, every attempt (change, score, status, the benchmark's message and output tails) and all of
          its own earlier feedback; it answers schema-validated JSON (feedback_schema.json).
"""
from __future__ import annotations

import json
from pathlib import Path

from tasks.code_edits import describe_edit_format

HERE = Path(__file__).resolve().parent
WORKER_TEMPLATE = (HERE / "worker_prompt.txt").read_text()
REVIEWER_TEMPLATE = (HERE / "reviewer_prompt.txt").read_text()
FEEDBACK_SCHEMA = json.loads((HERE / "feedback_schema.json").read_text())
WORKER_MAX_TOKENS = 800   # one rewritten function fits; rambling is cut off sooner
REVIEWER_MAX_TOKENS = 400
WORKER_TEMPERATURE = 0.7
REVIEWER_TEMPERATURE = 0.2
TAIL_CHARS = 300           # of each attempt's stdout/stderr in the reviewer's prompt


def worker_prompt(task_prompt: str, feedback: dict | None, last_error: str) -> str:
    parts = []
    if last_error:
        parts.append(f"The last attempt failed: {last_error}")
    if feedback:
        parts.append(f"Reviewer feedback ({feedback['issue_type']}, {feedback['severity']}): "
                     f"{feedback['fix_suggestion']}")
    text = "\n\n".join(parts) + "\n\n" if parts else ""
    return (WORKER_TEMPLATE.replace("{feedback}", text).replace("{edit_format}", describe_edit_format())
            .replace("{task_prompt}", task_prompt.rstrip()))


def reviewer_prompt(task_prompt: str, attempts: list[dict], feedback_history: list[dict]) -> str:
    history = "\n".join(_attempt_lines(a) for a in attempts) or "(none)"
    earlier = "\n".join(f"- after attempt {f['iteration']}: {json.dumps(f['feedback'])}" for f in feedback_history)
    return (REVIEWER_TEMPLATE.replace("{history}", history).replace("{feedback_history}", earlier or "(none)")
            .replace("{task_prompt}", task_prompt.rstrip()))


def _attempt_lines(attempt: dict) -> str:
    score = "no score" if attempt["metric"] is None else f"{attempt['metric']:g}"
    lines = [f"- attempt {attempt['iteration']}: {attempt['summary']} -> {score}, {attempt['status']}, "
             f"{'kept' if attempt['accepted'] else 'reverted'}"]
    if attempt.get("feedback_text"):
        lines.append(f"  result: {attempt['feedback_text']}")
    for stream in ("stdout", "stderr"):
        if attempt.get(stream):
            lines.append(f"  its {stream} ended with: {attempt[stream][-TAIL_CHARS:]!r}")
    return "\n".join(lines)
