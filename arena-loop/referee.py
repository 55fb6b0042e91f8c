"""Case admission: a proposed test joins the suite only when it is right. All of this is trusted code.

In order, a case must be
  1. well formed: the task's CASE_SCHEMA, the task's own `validate_case` when it has one, and decidable
     without a model (no "judge" matchers: every code agent must be scored the same way every time);
  2. new: its normalized key (the case's input, see case_key) is not in the task's own cases, the suite,
     or this round's earlier proposals;
  3. confirmed by an independent referee: the task's `reference_check` when it defines one; otherwise
     an LLM call, role "referee", that sees the task specification (and the task's reference text, if
     any) and the case, never the test agent's prompt or reply. A referee that fails rejects the case.
A rejection keeps the case and the stage and reason, for the record.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.harness import sibling
from tasks.llm import BudgetExceeded, LLMError
from tasks.task_kit import schema_problem

llm = sibling(__file__, "llm")

# Fields that state the expected outcome rather than the input; the dedup key leaves them out, so the
# same input with another label is a duplicate (one of the two labels is wrong anyway).
OUTCOME_FIELDS = frozenset({"expected", "checks", "min_apples", "max_chars", "note"})
MAX_CASE_CHARS = 20_000
REFERENCE_ARTICLES = 3          # knowledge-base articles shown to the LLM referee / a test agent
REFERENCE_CHARS = 2400


@dataclass
class Decision:
    accepted: bool
    stage: str = ""      # "schema", "duplicate" or "referee" when rejected
    reason: str = ""


def case_key(task, case) -> str:
    """What makes two cases the same test: the task's own `case_key(case)` if it has one, else the case's
    input fields, with strings lower-cased and whitespace collapsed."""
    custom = getattr(task.config, "case_key", None)
    if callable(custom):
        return str(custom(case))
    def normalize(value):
        if isinstance(value, str):
            return re.sub(r"\s+", " ", value.strip().lower())
        if isinstance(value, list):
            return [normalize(item) for item in value]
        if isinstance(value, dict):
            return {k: normalize(v) for k, v in value.items()}
        return value
    inputs = {key: value for key, value in case.items() if key not in OUTCOME_FIELDS} if isinstance(case, dict) else case
    return json.dumps(normalize(inputs), sort_keys=True, ensure_ascii=False)


def original_cases(task) -> list:
    """The task's own cases, when it keeps them in a form the arena can read (for dedup and examples)."""
    path = Path(task.path) / "test_cases.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data.get("cases", [])) if isinstance(data, dict) else []
    loader = getattr(task.config, "load_cases", None)
    if callable(loader):
        try:
            return list(loader().values())
        except (TypeError, ValueError, OSError):
            return []
    return []


def reference_text(task, words: str, rng: random.Random | None = None) -> str:
    """Reference material a task provides: its own `referee_context(case_text)` when defined; else, for a task
    with a knowledge base (`load_kb`), the articles sharing most words with `words` (or random ones)."""
    custom = getattr(task.config, "referee_context", None)
    if callable(custom):
        return str(custom(words))[:REFERENCE_CHARS]
    load_kb = getattr(task.config, "load_kb", None)
    if not callable(load_kb):
        return ""
    articles = load_kb()
    if rng is not None:
        chosen = rng.sample(articles, min(REFERENCE_ARTICLES, len(articles)))
    else:
        wanted = set(re.findall(r"[a-z0-9$%]+", words.lower()))
        chosen = sorted(articles, key=lambda a: -len(wanted & set(re.findall(r"[a-z0-9$%]+",
                                                                             (a.get("title", "") + " " + a.get("body", "")).lower()))))
        chosen = chosen[:REFERENCE_ARTICLES]
    text = "\n".join(f"[{a.get('title', '')}] {a.get('body', '')}" for a in chosen)
    return text[:REFERENCE_CHARS]


def _has_judge_matcher(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "judge":
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def form_problem(task, case) -> str | None:
    if not isinstance(case, dict):
        return f"a case must be a JSON object, got {type(case).__name__}"
    if len(json.dumps(case, ensure_ascii=False)) > MAX_CASE_CHARS:
        return f"the case is over {MAX_CASE_CHARS} characters as JSON"
    problem = schema_problem(case, task.config.CASE_SCHEMA)
    if problem:
        return problem
    # the task's own well-formedness check: validate_case (support) or case_problem (snake: legal layout)
    validate_case = getattr(task.config, "validate_case", None) or getattr(task.config, "case_problem", None)
    if callable(validate_case):
        problem = validate_case(case)
        if problem:
            return str(problem)[:300]
    if _has_judge_matcher(case):
        return 'a "judge" matcher needs a model to decide; the arena only admits deterministic checks'
    return None


def referee_verdict(task, case: dict, client, spec: str) -> str | None:
    """None when the referee confirms the case's expected outcome, else why not."""
    check = getattr(task.config, "reference_check", None)
    if callable(check):
        reason = check(case)
        return None if reason is None else f"reference check: {str(reason)[:300]}"
    prompt = llm.referee_prompt(spec, case, reference_text(task, json.dumps(case, ensure_ascii=False)))
    try:
        reply = client.complete("referee", prompt, schema=llm.VERDICT_SCHEMA, max_tokens=llm.REFEREE_MAX_TOKENS,
                                temperature=llm.REFEREE_TEMPERATURE)
    except BudgetExceeded:
        raise
    except LLMError as error:
        return f"the referee could not decide (so the case is not admitted): {str(error)[:200]}"
    if reply.truncated or not isinstance(reply.data, dict):
        return "the referee's reply was unusable (so the case is not admitted)"
    if reply.data.get("correct") is True:
        return None
    return "LLM referee: " + (str(reply.data.get("reason", "")).strip()[:300] or "expected outcome is wrong")


def admit(task, case, seen_keys: set, client, spec: str) -> Decision:
    """Decide one proposed case; on acceptance its key is added to `seen_keys`."""
    problem = form_problem(task, case)
    if problem:
        return Decision(False, "schema", problem)
    key = case_key(task, case)
    if key in seen_keys:
        return Decision(False, "duplicate", "the same input is already a test (the task's own cases, the suite, "
                                            "or an earlier proposal this round)")
    reason = referee_verdict(task, case, client, spec)
    if reason:
        return Decision(False, "referee", reason)
    seen_keys.add(key)
    return Decision(True)
