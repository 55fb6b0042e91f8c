"""Small helpers for writing a task's config.py, so each task folder holds only what is specific to it."""
from __future__ import annotations

import jsonschema


def fill_prompt(template: str, code: str, metric_text: str) -> str:
    """The template with {metric} and {code} filled in. Plain replacement, not str.format, because prompt
    templates show braces (JSON, regex classes); the code goes in last, so nothing inside it is a placeholder."""
    return template.replace("{metric}", metric_text).replace("{code}", code.rstrip())


def schema_problem(value, schema: dict, what: str = "case", schema_name: str = "CASE_SCHEMA") -> str | None:
    """None when `value` matches the JSON schema, else a short reason that says where it does not."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        return f"{what} does not match {schema_name}{' at ' + where if where else ''}: {error.message[:300]}"
    return None
