"""The seed task agent (generation 0; this file is never modified: the run rewrites copies of it).

It runs inside the sandbox. `propose(context)` gets plain data from the trusted loop and returns the text of an
LLM reply (the changed functions, SEARCH/REPLACE edits or a whole file) that the loop turns into a candidate solution and scores.
Its only way to a model is the broker: sandbox_host.call("llm", "task_agent", prompt, schema, max_tokens).

context keys: task_prompt (the task, the best code and its score), history (recent attempts: iteration,
summary, metric, accepted), last_error (why the last attempt failed, or ""), edit_format, metric_name.
"""
import sandbox_host

HISTORY_SHOWN = 6     # attempts listed in the prompt; a small model loses the thread in long prompts
MAX_TOKENS = 800

INSTRUCTION = "Improve the score with a small, focused change to the current code."


def history_lines(history, metric_name):
    if not history:
        return ""
    lines = ["What was tried so far (most recent last):"]
    for attempt in history[-HISTORY_SHOWN:]:
        score = "no score" if attempt["metric"] is None else "%s %g" % (metric_name, attempt["metric"])
        verdict = "kept" if attempt["accepted"] else "reverted"
        lines.append("- attempt %s: %s -> %s, %s" % (attempt["iteration"], attempt["summary"], score, verdict))
    return "\n".join(lines) + "\n\n"


def build_prompt(context):
    error = "The last attempt failed: %s\n\n" % context["last_error"] if context["last_error"] else ""
    return (context["task_prompt"].rstrip() + "\n\n"
            + history_lines(context["history"], context["metric_name"])
            + error + INSTRUCTION + "\n" + context["edit_format"])


def propose(context):
    reply = sandbox_host.call("llm", "task_agent", build_prompt(context), None, MAX_TOKENS)
    return reply["text"]
