"""A code agent's proposer, the code that writes code: the arena's mutator may rewrite this file.

It runs in the sandbox. `propose(context)` gets plain data from the arena and returns the model's
reply; the arena turns that reply into a candidate solution (the changed functions, SEARCH/REPLACE edits or a whole file),
scores it on the whole suite and keeps it only if it is better.
"""
import sandbox_host

MAX_TOKENS = 800


def propose(context):
    parts = [context["task_prompt"]]
    if context.get("feedback"):
        parts.append("How the current code does on the tests: " + context["feedback"])
    if context.get("last_error"):
        parts.append("Your last change was not kept: " + context["last_error"])
    parts.append("Fix one failing case with a small, focused change.\n" + context["edit_format"])
    reply = sandbox_host.call("llm", "code_agent", "\n\n".join(parts), None, MAX_TOKENS)
    return {"text": reply["text"], "truncated": reply["truncated"]}
