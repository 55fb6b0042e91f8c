"""Level 4's model roles and their prompts: code_agent (inside each agent's sandboxed propose()),
test_agent, referee and mutator. Templates are the text files in prompts/.

Prompts are short on purpose (the default model is a 0.5B one): the test agent sees the specification,
the code it attacks, a few existing cases and its focus; the referee sees the specification and the case,
never the test agent's prompt or reply; structured output (a JSON schema) is enforced by the client.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from tasks.code_edits import describe_edit_format

PROMPTS = Path(__file__).resolve().parent / "prompts"
TEST_AGENT_TEMPLATE = (PROMPTS / "test_agent.txt").read_text(encoding="utf-8")
REFEREE_TEMPLATE = (PROMPTS / "referee.txt").read_text(encoding="utf-8")
MUTATE_PROPOSE_TEMPLATE = (PROMPTS / "mutate_propose.txt").read_text(encoding="utf-8")
MUTATE_FOCUS_TEMPLATE = (PROMPTS / "mutate_focus.txt").read_text(encoding="utf-8")

TEST_AGENT_MAX_TOKENS = 1000
TEST_AGENT_TEMPERATURE = 0.8     # variety across rounds; the referee catches what goes wrong
REFEREE_MAX_TOKENS = 200
REFEREE_TEMPERATURE = 0.0        # a verdict, not a creative act
MUTATOR_MAX_TOKENS = 1200
MUTATOR_TEMPERATURE = 0.9
EXAMPLES_SHOWN = 4               # existing cases shown to a test agent
EXAMPLE_CHARS = 1200             # ...cut to this many characters in all
MAX_FOCUS_CHARS = 300

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 300}},
    "required": ["correct"],
}
FOCUS_SCHEMA = {
    "type": "object",
    "properties": {"focus": {"type": "string", "minLength": 1, "maxLength": MAX_FOCUS_CHARS}},
    "required": ["focus"],
}
# What one case means, for the test agent, when the task's config has no CASE_DESCRIPTION of its own.
CASE_HINTS = {
    "email_validation": '"expected" is true when the address is valid under the rule, false otherwise.',
    "snake": ("a scenario: the benchmark plays the code from this starting layout (snake head first; direction "
              "points from the neck to the head; food not on the snake; every cell inside width x height), later "
              "food drawn from random.Random(seed). The case passes when the code eats at least min_apples apples. "
              "Pick layouts where this code dies early but a careful player still eats min_apples."),
    "support": ('a customer question answerable from the articles shown, and "checks": a list of {"id", '
                '"description", "weight", "matcher": {"type": "keywords", "any": [words a right answer contains]}}.'),
}
PROPOSE_CONTEXT_KEYS = ("task_prompt", "code", "score", "feedback", "last_error", "edit_format", "round")


def task_spec(task) -> str:
    """The task's prompt without its 'current score' and 'current code' parts: the rules alone."""
    text = task.build_prompt("", None)
    cut = re.search(r"\n\s*(Current score|Current code)", text)
    return (text[:cut.start()] if cut else text).strip()


def cases_schema(case_schema: dict, max_cases: int) -> dict:
    """{"cases": [case, ...]} around a task's CASE_SCHEMA; its $defs move to the root so "#/$defs/.." refs resolve."""
    item = copy.deepcopy(case_schema)
    definitions = item.pop("$defs", None)
    item.pop("$schema", None)
    schema = {"type": "object", "required": ["cases"], "additionalProperties": False,
              "properties": {"cases": {"type": "array", "minItems": 1, "maxItems": max_cases, "items": item}}}
    if definitions:
        schema["$defs"] = definitions
    return schema


def describe_fields(case_schema: dict) -> str:
    properties = case_schema.get("properties", {})
    required = case_schema.get("required", [])
    parts = [f'"{name}" ({properties.get(name, {}).get("type", "value")})' for name in required]
    optional = [name for name in properties if name not in required]
    return ", ".join(parts) + (f"; optional: {', '.join(optional)}" if optional else "")


def show_examples(cases: list) -> str:
    if not cases:
        return "(none yet)"
    lines, used = [], 0
    for case in cases[-EXAMPLES_SHOWN:]:
        line = json.dumps(case, ensure_ascii=False)
        if used + len(line) > EXAMPLE_CHARS and lines:
            break
        lines.append(line[:EXAMPLE_CHARS])
        used += len(line)
    return "\n".join(lines)


def case_description(task) -> str:
    return getattr(task.config, "CASE_DESCRIPTION", None) or CASE_HINTS.get(task.name, "")


def test_agent_prompt(spec: str, code: str, focus: str, examples: list, context: str,
                      case_schema: dict, max_cases: int, description: str = "") -> str:
    fields = describe_fields(case_schema) + (f". A case is {description}" if description else "")
    filled = {"{spec}": spec, "{focus}": focus, "{examples}": show_examples(examples),
              "{context}": f"\nReference text:\n{context.strip()}\n" if context.strip() else "",
              "{fields}": fields, "{max_cases}": str(max_cases)}
    text = TEST_AGENT_TEMPLATE
    for key, value in filled.items():
        text = text.replace(key, value)
    return text.replace("{code}", code.rstrip())  # code last: nothing inside it is a placeholder


def referee_prompt(spec: str, case: dict, context: str) -> str:
    return (REFEREE_TEMPLATE.replace("{context_note}", " and the reference text below" if context else "")
            .replace("{spec}", spec)
            .replace("{context}", f"\nReference text:\n{context.strip()}\n" if context else "")
            .replace("{case}", json.dumps(case, ensure_ascii=False, indent=1)))


def mutate_propose_prompt(source: str, stats: str) -> str:
    return (MUTATE_PROPOSE_TEMPLATE.replace("{stats}", stats)
            .replace("{context_keys}", ", ".join(PROPOSE_CONTEXT_KEYS))
            .replace("{edit_format}", describe_edit_format())
            .replace("{source}", source.rstrip()))


def mutate_focus_prompt(spec: str, focus: str, stats: str) -> str:
    short_spec = "\n".join(spec.splitlines()[:12])
    return MUTATE_FOCUS_TEMPLATE.replace("{spec}", short_spec).replace("{stats}", stats).replace("{focus}", focus)
