"""The seed meta-agent (generation 0; this file is never modified: the run rewrites copies of it).

It runs inside the sandbox. `rewrite(context)` reads the evaluation results so far, the remaining budget, the
reason the last rewrite was rejected, and the source of both agent files, and returns

    {"edits": {"task_agent.py": "<SEARCH/REPLACE blocks>"}, "reason": "why"}

The trusted loop applies the edits (or whole files given as {"files": {name: source}}), validates the result and
keeps it only if it is valid. Only task_agent.py and meta_agent.py may be named. A line "FILE: meta_agent.py" in the
model's reply sends the blocks after it to that file instead of task_agent.py.
"""
import sandbox_host

MAX_TOKENS = 1500
ITERATIONS_SHOWN = 8
DEFAULT_FILE = "task_agent.py"

INSTRUCTION = """You improve an AI agent that edits code. task_agent.py builds the prompt the agent sends to a \
language model to get a better solution for the task. Change task_agent.py so that its next attempts score \
better: for example, clearer instructions in its prompt, or hints about the failures below. Keep the \
function propose(context) and keep it returning the model's reply text. To change meta_agent.py (this \
rewriting step itself) instead, put a line "FILE: meta_agent.py" before its blocks.
First write one line starting with "Reason:" saying why your change helps. Then the edit blocks."""


def results_lines(context):
    evaluation, budget = context["evaluation"], context["budget"]
    metric = context["task"]["metric_name"]
    lines = ["Results so far: initial %s %g, best %g." % (metric, evaluation["initial_metric"],
                                                             evaluation["best_metric"])]
    for generation in evaluation["generations"][-4:]:
        score = "no score" if generation["score"] is None else "%s %g" % (metric, generation["score"])
        lines.append("- generation %d (%s): %s" % (generation["generation"], generation["status"], score))
    for attempt in evaluation["iterations"][-ITERATIONS_SHOWN:]:
        score = "no score" if attempt["metric"] is None else "%s %g" % (metric, attempt["metric"])
        verdict = "kept" if attempt["accepted"] else "reverted"
        lines.append("- iteration %d: %s, %s (%s)" % (attempt["iteration"], score, verdict, attempt["status"]))
    if evaluation["last_failure"]:
        lines.append("The last attempt failed: " + evaluation["last_failure"][:600])
    calls = "unlimited" if budget["llm_calls_left"] is None else budget["llm_calls_left"]
    lines.append("Budget left: %d iterations, LLM calls: %s." % (budget["iterations_left"], calls))
    if context["last_rejection"]:
        lines.append("Your last rewrite was rejected: " + context["last_rejection"])
    return "\n".join(lines)


def build_prompt(context):
    sources = context["sources"]
    return (INSTRUCTION + "\n\n" + results_lines(context) + "\n\n"
            + "Current task_agent.py:\n```python\n" + sources["task_agent.py"].rstrip() + "\n```\n\n"
            + "Current meta_agent.py:\n```python\n" + sources["meta_agent.py"].rstrip() + "\n```\n\n"
            + context["edit_format"])


def split_by_file(text):
    """The reply's blocks per file: a line "FILE: name" switches the file the following blocks go to."""
    edits, name, lines = {}, DEFAULT_FILE, []
    for line in text.splitlines():
        if line.strip().upper().startswith("FILE:"):
            if "".join(lines).strip():
                edits[name] = "\n".join(lines)
            name, lines = line.split(":", 1)[1].strip(), []
        else:
            lines.append(line)
    if "".join(lines).strip():
        edits[name] = "\n".join(lines)
    return edits


def rewrite(context):
    reply = sandbox_host.call("llm", "meta_agent", build_prompt(context), None, MAX_TOKENS)
    if reply["truncated"]:
        return {"edits": {}, "reason": "the model's reply was cut off at the token limit; nothing changed"}
    text = reply["text"]
    reason = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                   if line.strip().lower().startswith("reason:")), "no reason given")
    body = "\n".join(line for line in text.splitlines() if not line.strip().lower().startswith("reason:"))
    return {"edits": split_by_file(body), "reason": reason}
